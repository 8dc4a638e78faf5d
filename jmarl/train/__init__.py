"""The training run: the algorithm contract and registry, the chunked run with checkpoints and resume,
statistics, metrics, plots, and loading a saved run (``jmarl.load``). Imports ``core`` and ``agents``."""
