"""Tools on top of runs: the ``jmarl`` command, rendering, reproduction presets and result tables."""
