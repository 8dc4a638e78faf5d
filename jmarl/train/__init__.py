"""The training run: the algorithm contract and registry, the chunked run with checkpoints and resume,
statistics, metrics, plots, and loading a saved run (``jmarl.load``). Imports ``core`` and ``agents``."""

# Loading saved runs lives here; importing it lets fixed_policy=RUN_DIR opponents (jmarl.agents) find it.
import jmarl.train.load  # noqa: E402,F401
