"""Benchmarks: each prints figures next to baselines measured in the same run (`guardlink bench ...`)."""
