"""Experiments over many runs: sweeps of config grids and named recipes (``sweep.py``),
their tables and Pareto fronts (``report.py``) and figures (``figures.py``). The runner
is passed in (the Simulation Engine's ``simulate``), so nothing here starts an engine."""
