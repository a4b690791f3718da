"""benchmarks/gpu_check.sh works end to end (its CPU dry run)."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_writes_tests_and_benchmark(tmp_path):
    output = tmp_path / "gpu_check.txt"
    result = subprocess.run(
        [os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--cpu-dry-run", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = output.read_text()
    assert "(CPU dry run)" in text and "TensorFlow GPUs: 0" in text
    assert "## tests: tests/test_optimizer.py" in text
    # pytest's own summary line, not TensorFlow's log (which may say "failed
    # call to cuInit" on a machine with CUDA libraries and no GPU).
    summary = [line for line in text.splitlines() if re.search(r"\b\d+ (passed|failed|errors?)\b.* in [\d.]+s", line)]
    assert summary, text[-3000:]
    assert " passed" in summary[-1], summary[-1]
    assert not re.search(r"\d+ (failed|errors?)\b", summary[-1]), summary[-1]
    assert "## benchmarks/step_time.py --quick" in text
    assert "ratio LearnedOptimizer/Adam, first fit call, 6 variables, XLA: " in text
    assert text.rstrip().splitlines()[-1].startswith("optimizer state, floats per parameter: ")
