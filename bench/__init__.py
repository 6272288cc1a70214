"""Benchmarks: `make bench` (or `python -m bench`). Each prints its numbers and ratios against a
comparison run in the same session."""
