"""Evaluating optimizers: suites of held-out tasks, the benchmark harness
and its report, and tuning searches (needs the `meta` extra).

Modules: `suites` (selection and test suites), `specs` (optimizer specs),
`harness` (training runs, results files), `report` (per-metric tuned Adam,
counts against the targets, tables), `tuning` (KerasTuner searches).
"""
