"""jmarl's single-file algorithms (installed as ``jmarl.algos``)."""
