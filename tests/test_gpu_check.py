"""benchmarks/gpu_check.sh works end to end (its CPU dry run)."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gpu_check(*arguments, timeout=1800):
    """Runs `benchmarks/gpu_check.sh ARGUMENTS` from the repository root."""
    return subprocess.run(
        [os.path.join(ROOT, "benchmarks", "gpu_check.sh"), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_writes_tests_and_benchmark(tmp_path):
    output = tmp_path / "gpu_check.txt"
    result = _gpu_check("--cpu-dry-run", "--output", str(output))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = output.read_text()
    assert "Keras backend tensorflow (CPU dry run)" in text and "GPUs seen by tensorflow: 0" in text
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


@pytest.mark.slow
def test_gpu_check_jax_cpu_dry_run_writes_trajectories_and_benchmark(tmp_path):
    output = tmp_path / "gpu_check.txt"
    result = _gpu_check("--backend", "jax", "--cpu-dry-run", "--output", str(output))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = output.read_text()
    assert "Keras backend jax (CPU dry run)" in text
    assert (tmp_path / "trajectories_fast_jax.npz").is_file()
    assert "ratio LearnedOptimizer/Adam, fit step, residual MLP, 6 variables, batch 32, XLA: " in text
    assert "ratio LearnedOptimizer/Adam, first fit call, 6 variables, XLA: " in text


def test_gpu_check_refuses_an_unknown_backend(tmp_path):
    result = _gpu_check("--backend", "numpy", "--output", str(tmp_path / "x"), timeout=60)
    assert result.returncode == 2
    assert "--backend must be tensorflow, jax or torch; received 'numpy'" in result.stderr
