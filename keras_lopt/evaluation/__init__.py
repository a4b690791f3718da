"""Evaluating optimizers on tasks that meta-training never sees (needs the
`meta` extra).

    suites.py           the selection and test suites by name
    selection_suite.py  tasks that choose checkpoints, recipes and presets
    test_suite.py       tasks that report a candidate and choose nothing
    tasks.py            `EvalTask` and the data helpers the suites share
    specs.py            optimizer specs (`learned+horizon`, `adam@LR`, ...)
    harness.py          training runs with `model.fit`, resumable results files
    report.py           Adam tuned per metric, counts against the targets, tables
    tuning.py           KerasTuner searches and the trials-to-match report
"""
