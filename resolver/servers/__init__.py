"""Thin I/O drivers: listeners that turn bytes on a socket into calls on codecs and the engine.

Only the composition root (``resolver.cli``) and test harnesses import this package.
"""
