"""Local simulators of third-party services used by tests and benchmarks."""
