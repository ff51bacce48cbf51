"""The relay benchmark: the app under daphne against the simulator, beside a direct floor.

``python -m bench`` (or ``make bench``) runs it; see docs/benchmark.md for what it
measures and how.
"""
