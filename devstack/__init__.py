"""Real components on loopback for `make run`, the tests and the benchmarks."""
