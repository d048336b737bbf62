"""Helpers shared by the tests: tiny models and data, float64 references, the local Hub server and its fixtures.

`tests/` is on `sys.path` under pytest's default "prepend" import mode (it holds the root `conftest.py`), so the
tests import these as `from _helpers.trainer_utils import ...`.
"""
