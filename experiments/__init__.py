"""The experiments of docs/results.md: ``python -m experiments.run NAME``, then
``python -m experiments.report``."""
