"""jmarl's environments (installed as ``jmarl.envs``): ``mpe`` and ``smax``. Build them with ``jmarl.make``."""
