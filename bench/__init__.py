"""Benchmarks of idnode: ``python -m bench SCENARIO [options]`` (see bench/README.md)."""
