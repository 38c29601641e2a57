"""Benchmarks: measured against a baseline in the same run; results in docs/benchmarks.md.

Never part of `make test` (no timing assertions in tests). `make bench` runs them all.
"""
