"""mutmut reads this from PYTHONPATH: scripts/mutation.py picks the mutants and their tests."""

from mutation import pre_mutation  # noqa: F401
