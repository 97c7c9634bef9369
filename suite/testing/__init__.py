"""Test kit shipped with the suite: builders of contract-conformant inputs for tests and benchmarks.

An importable package (not a ``sys.path`` insert into ``tests/``) so that the tests, ``scripts/`` and a
user's own checks of a report pipeline build the same synthetic run directories. Imports pandas and numpy,
never torch, Ray or submitit.
"""
