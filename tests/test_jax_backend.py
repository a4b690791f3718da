"""The optimizer trains the same on Keras' JAX backend as on TensorFlow.

`backend_trajectories.py` runs each group of cases once per backend, in
subprocesses (Keras picks its backend when it is imported), from the same
numpy initial weights and data; the weights after the last step are
compared here.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="jax is not installed (pip install 'jax[cpu]', in the `test` extra)",
)

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
# Per element, with an absolute floor for elements near zero (weights are of
# order 0.1 to 1).
RTOL, ATOL = 1e-5, 1e-6


def _run_both_backends(group, tmp_path_factory):
    """`{backend: npz}` of `backend_trajectories.py GROUP`, run on both
    backends at once."""
    directory = tmp_path_factory.mktemp(f"trajectories_{group}")
    runs = {}
    for backend in ("tensorflow", "jax"):
        path = str(directory / f"{backend}.npz")
        env = dict(
            os.environ,
            KERAS_BACKEND=backend,
            PYTHONPATH=REPO,
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        process = subprocess.Popen(
            [sys.executable, os.path.join(TESTS, "backend_trajectories.py"), group, path],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        runs[backend] = (process, path)
    results = {}
    for backend, (process, path) in runs.items():
        output, _ = process.communicate(timeout=1200)
        assert process.returncode == 0, f"{backend}:\n{output[-4000:]}"
        results[backend] = dict(np.load(path))
        assert str(results[backend]["backend"]) == backend
    return results


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    return _run_both_backends("fast", tmp_path_factory)


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    return _run_both_backends("slow", tmp_path_factory)


def _weights(results, case):
    return [results[f"{case}/w{i}"] for i in range(4) if f"{case}/w{i}" in results]


def _assert_same_weights(results, case, rtol=RTOL, atol=ATOL):
    tf_weights = _weights(results["tensorflow"], case)
    jax_weights = _weights(results["jax"], case)
    assert len(tf_weights) == len(jax_weights) > 0
    for tf_value, jax_value in zip(tf_weights, jax_weights):
        np.testing.assert_allclose(jax_value, tf_value, rtol=rtol, atol=atol)


def test_adam_equivalent_preset_matches_adam_on_jax(fast):
    jax = fast["jax"]
    for learned, adam in zip(_weights(jax, "adam_equivalent"), _weights(jax, "keras_adam")):
        np.testing.assert_allclose(learned, adam, rtol=RTOL, atol=ATOL)
    _assert_same_weights(fast, "adam_equivalent")
    _assert_same_weights(fast, "keras_adam")


def test_default_preset_trains_the_same_on_jax(fast):
    _assert_same_weights(fast, "default")
    moved = np.max(np.abs(fast["jax"]["default/w0"] - fast["jax"]["adam_equivalent/w0"]))
    assert moved > 1e-3  # the default preset is not Adam


def test_keras_file_round_trip_on_jax(fast):
    for backend in ("tensorflow", "jax"):
        assert bool(fast[backend]["keras_file/state_equal"])
        assert int(fast[backend]["keras_file/iterations"]) == 100
    # Saving, loading and resuming gives the uninterrupted trajectory.
    for resumed, straight in zip(_weights(fast["jax"], "keras_file"), _weights(fast["jax"], "default")):
        np.testing.assert_allclose(resumed, straight, rtol=RTOL, atol=ATOL)
    _assert_same_weights(fast, "keras_file")


def test_nonfinite_gradients_are_skipped_on_jax(fast):
    assert int(fast["jax"]["nonfinite_skip/skipped"]) == 2
    assert int(fast["tensorflow"]["nonfinite_skip/skipped"]) == 2
    assert np.all(np.isfinite(fast["jax"]["nonfinite_skip/w0"]))
    _assert_same_weights(fast, "nonfinite_skip")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["adaptive_mlp", "full_features_guard_decay", "ffn_lstm", "hyper_lstm"])
def test_other_architectures_train_the_same_on_jax(slow, case):
    _assert_same_weights(slow, case)


@pytest.mark.slow
def test_mixed_precision_trains_alike_on_jax(slow):
    # float16 forward and backward passes round differently on the two
    # backends, so only the float32 cases are held to RTOL.
    _assert_same_weights(slow, "mixed_float16", rtol=1e-2, atol=1e-3)
