"""Meta tests: imports, layering, outcome tables, module docstrings and the README."""
