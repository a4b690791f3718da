"""benchmarks/gpu_check.sh works end to end (its CPU dry run)."""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_writes_tests_and_benchmark(tmp_path):
    output = tmp_path / "gpu_check.txt"
    result = subprocess.run(
        [os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--cpu-dry-run",
         "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = output.read_text()
    assert "(CPU dry run)" in text and "TensorFlow GPUs: 0" in text
    assert "## tests: tests/test_optimizer.py" in text
    assert " passed" in text and " failed" not in text
    assert "## benchmarks/step_time.py --quick" in text
    assert "ratio LearnedOptimizer/Adam, first fit call, 6 variables, XLA: " in text
    assert text.rstrip().splitlines()[-1].startswith(
        "optimizer state, floats per parameter: "
    )
