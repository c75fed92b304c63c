"""Scenario tests: several real idnode processes wired into a hierarchy (issue 7 §8)."""
