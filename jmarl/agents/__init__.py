"""What an algorithm author needs: networks and optimiser steps, acting and evaluating in batches of envs
(rollout), opponents (fixed teams), and branching env states. Imports ``jmarl.core`` only."""
