"""`benchmarks/validation_frontier.py`: its pool builds, its table counts."""

import json
import os
import re
import subprocess
import sys

import pytest
from result_rows import row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "validation_frontier.py")


@pytest.fixture(scope="module")
def frontier():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import validation_frontier
    finally:
        sys.path.pop(0)
    return validation_frontier


def test_every_rule_of_the_pool_builds_as_named(frontier):
    import keras

    from keras_lopt.evaluation import specs

    rules = frontier.pool(1000)
    assert len(rules) == 15
    for name, config in rules.items():
        optimizer = specs.make_optimizer(config)
        expected = {"adamw": "AdamW", "adam": "Adam", "sgdm": "SGD", "lion": "Lion", "learned": "LearnedOptimizer"}
        assert type(optimizer).__name__ == expected[re.match(r"[a-z]+", name).group()], name
        if "cosine" in name:
            schedule = optimizer._learning_rate
            assert isinstance(schedule, keras.optimizers.schedules.CosineDecay), name
            assert schedule.decay_steps == 1000 and float(schedule(1000)) == 0.0
        if "wd=" in name:
            assert optimizer.weight_decay == float(name.rpartition("wd=")[2]), name


def test_table_counts_rules_that_win_both_across_the_two_files(tmp_path):
    suite = [
        row("mlp_iris", 0, "adam@0.001", 1.0, 1.0),
        row("mlp_iris", 0, "adam@0.01", 0.5, 2.0),  # training loss only
        row("mlp_iris", 1, "adam@0.001", 1.0, 1.0),
        row("mlp_wine", 0, "adam@0.001", 1.0, 1.0),  # not one of the task-seeds: ignored
        row("mlp_wine", 0, "adam@0.01", 0.5, 0.5),
    ]
    pool = [
        row("mlp_iris", 0, "sgdm@0.01", 0.9, 0.9),  # wins both
        row("mlp_iris", 1, "sgdm@0.01", 0.9, 1.5),
        row("mlp_iris", 1, "lion@0.0001", 0.8, 1.2),
    ]
    paths = []
    for name, rows in (("suite.jsonl", suite), ("pool.jsonl", pool)):
        paths.append(tmp_path / name)
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = subprocess.run(
        [sys.executable, SCRIPT, "--suite-results", str(paths[0]), "--output", str(paths[1])],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| mlp_iris | 0 | 1 / 1 | 2 | sgdm@0.01 | 0.9 (sgdm@0.01) |" in lines
    assert "| mlp_iris | 1 | 1 / 1 | 2 | (none) | 1.2 (lion@0.0001) |" in lines
    assert "| resmlp_ln_mnist1d_1k | 0 | (no Adam(1e-3) run) | | | |" in lines
    assert "task-seeds where some rule wins both: 1/10" in lines
