"""Benchmarks of facequeue: `python -m bench [names...] [--quick]` (see `python -m bench --help`).

Every figure is measured in one run on one machine and reported as a ratio against a baseline measured
in the same run; each run appends a dated section to BENCHMARKS.md with the command that reproduces it.
"""
