"""Devices, links and prices, and what a workload costs on them: pure data and functions,
shared by the simulator and the split-inference planner."""
