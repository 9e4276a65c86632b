"""A sixth task built only from litforge's task contract (README, "Add your own task / data / model"):
the sum of a row of digits. Used by tests/test_task_contract.py; not part of the package."""
