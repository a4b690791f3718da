"""`benchmarks/both_metrics_oracle.py` on a hand-made results file."""

import json
import os
import subprocess
import sys

from result_rows import row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "both_metrics_oracle.py")


def _run(tmp_path, rows, optimizer):
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return subprocess.run([sys.executable, SCRIPT, str(path), optimizer], capture_output=True, text=True)


def test_counts_wins_on_both_metrics_and_the_oracle(tmp_path):
    rows = [
        # t0: "a" wins both; "b" only training loss.
        row("t0", 0, "adam@0.001", 1.0, 1.0),
        row("t0", 0, "a", 0.5, 0.5),
        row("t0", 0, "b", 0.5, 2.0),
        # t1: "b" wins both; "a" is within the 0.1% margin on validation.
        row("t1", 0, "adam@0.001", 1.0, 1.0),
        row("t1", 0, "a", 0.5, 0.9995),
        row("t1", 0, "b", 0.9, 0.9),
        # t2: nobody wins both; a NaN never wins.
        row("t2", 0, "adam@0.001", 1.0, 1.0),
        row("t2", 0, "a", float("nan"), 0.1),
        row("t2", 0, "b", 2.0, 0.1),
    ]
    result = _run(tmp_path, rows, "a")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "a: wins both on 1/3" in lines
    assert "b: wins both on 1/3" in lines
    # ceil(0.95 * 3) + ceil(0.8 * 3) - 3 = 3 + 3 - 3.
    assert "oracle (best of all 2 per task-seed, with hindsight): 2/3; needed: 3" in lines
    assert "| t2 | 0 | no | (none) |" in lines


def test_unknown_optimizer_names_what_was_found(tmp_path):
    result = _run(tmp_path, [row("t0", 0, "adam@0.001", 1.0, 1.0), row("t0", 0, "a", 0.5, 0.5)], "c")
    assert result.returncode != 0
    assert "No runs of optimizer 'c'" in result.stderr and "['a']" in result.stderr
