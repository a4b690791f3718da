"""The optimizer trains the same on Keras' JAX and PyTorch backends as on TensorFlow.

`backend_trajectories.py` runs each group of cases once per backend, in
subprocesses (Keras picks its backend when it is imported), from the same
numpy initial weights and data; the weights after the last step are
compared here. A backend whose framework is not installed is skipped (both
are in the `test` extra).

`KERAS_LOPT_TRAJECTORIES=<folder>` compares TensorFlow's runs here with
results computed elsewhere (`benchmarks/gpu_check.sh --backend jax` on a GPU
writes `trajectories_<group>_<backend>.npz`): a backend with a file there is
read instead of run.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

# Results of other machines (see the module docstring), or None.
GIVEN = os.environ.get("KERAS_LOPT_TRAJECTORIES")


def _given(group, backend):
    """The path of `backend`'s results for `group` in GIVEN, or None."""
    path = GIVEN and os.path.join(GIVEN, f"trajectories_{group}_{backend}.npz")
    return path if path and os.path.isfile(path) else None


# The backends compared with TensorFlow: those installed or given.
OTHERS = tuple(
    name
    for name in ("jax", "torch")
    if importlib.util.find_spec(name) is not None or _given("fast", name) or _given("slow", name)
)
pytestmark = pytest.mark.skipif(not OTHERS, reason="neither jax nor torch is installed (both are in the `test` extra)")

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
# Per element, with an absolute floor for elements near zero (weights are of
# order 0.1 to 1).
RTOL, ATOL = 1e-5, 1e-6


def _run_both_backends(group, tmp_path_factory):
    """`{backend: npz}` of `backend_trajectories.py GROUP`, run on TensorFlow
    and `OTHERS` at once."""
    directory = tmp_path_factory.mktemp(f"trajectories_{group}")
    runs = {}
    given = {}
    for backend in ("tensorflow", *OTHERS):
        if backend != "tensorflow" and _given(group, backend):
            given[backend] = dict(np.load(_given(group, backend)))
            continue
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
    results = given
    for backend, (process, path) in runs.items():
        output, _ = process.communicate(timeout=1200)
        assert process.returncode == 0, f"{backend}:\n{output[-4000:]}"
        results[backend] = dict(np.load(path))
    for backend, arrays in results.items():
        assert str(arrays["backend"]) == backend
    return results


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    return _run_both_backends("fast", tmp_path_factory)


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    return _run_both_backends("slow", tmp_path_factory)


def _weights(results, case):
    return [results[f"{case}/w{i}"] for i in range(4) if f"{case}/w{i}" in results]


def _assert_same_weights(results, case, other, rtol=RTOL, atol=ATOL, tf_case=None):
    """`case` on `other` ends with the weights of `tf_case` (default: `case`)
    on TensorFlow."""
    tf_weights = _weights(results["tensorflow"], tf_case or case)
    other_weights = _weights(results[other], case)
    assert len(tf_weights) == len(other_weights) > 0
    for tf_value, other_value in zip(tf_weights, other_weights):
        np.testing.assert_allclose(other_value, tf_value, rtol=rtol, atol=atol)


@pytest.fixture(params=OTHERS)
def other(request):
    return request.param


def test_adam_equivalent_preset_matches_adam(fast, other):
    for learned, adam in zip(_weights(fast[other], "adam_equivalent"), _weights(fast[other], "keras_adam")):
        np.testing.assert_allclose(learned, adam, rtol=RTOL, atol=ATOL)
    _assert_same_weights(fast, "adam_equivalent", other)
    _assert_same_weights(fast, "keras_adam", other)


def _default_case(other):
    """The TensorFlow case a default-preset run on `other` must match: Keras'
    JAX `fit` gives the optimizer no loss, and the default reads it."""
    return "default_without_loss" if other == "jax" else "default"


def test_default_preset_trains_the_same(fast, other):
    _assert_same_weights(fast, "default_without_loss", other)
    _assert_same_weights(fast, "default", other, tf_case=_default_case(other))
    moved = np.max(np.abs(fast[other]["default/w0"] - fast[other]["adam_equivalent/w0"]))
    assert moved > 1e-3  # the default preset is not Adam


def test_keras_file_round_trip(fast, other):
    for backend in ("tensorflow", other):
        assert bool(fast[backend]["keras_file/state_equal"])
        assert int(fast[backend]["keras_file/iterations"]) == 100
    # Saving, loading and resuming gives the uninterrupted trajectory.
    for resumed, straight in zip(_weights(fast[other], "keras_file"), _weights(fast[other], "default")):
        np.testing.assert_allclose(resumed, straight, rtol=RTOL, atol=ATOL)
    _assert_same_weights(fast, "keras_file", other, tf_case=_default_case(other))


def test_nonfinite_gradients_are_skipped(fast, other):
    assert int(fast[other]["nonfinite_skip/skipped"]) == 2
    assert int(fast["tensorflow"]["nonfinite_skip/skipped"]) == 2
    assert np.all(np.isfinite(fast[other]["nonfinite_skip/w0"]))
    _assert_same_weights(fast, "nonfinite_skip", other)


def test_default_preset_steps_variables_together_on_jax_and_torch(fast, other):
    """On JAX and PyTorch the default's variables are stepped together (the
    per-tensor controller batched); the same numbers as TensorFlow's
    per-variable programs, also when a step is skipped as non-finite."""
    if not _given("fast", other):  # results from elsewhere: their numbers only
        calls = fast[other]["default_nonfinite_skip/batched_calls"]
        assert list(calls) == [2] * 30  # APPLY_STEPS steps of 2 variables
    assert list(fast["tensorflow"]["default_nonfinite_skip/batched_calls"]) == []
    assert int(fast[other]["default_nonfinite_skip/skipped"]) == 2
    assert int(fast["tensorflow"]["default_nonfinite_skip/skipped"]) == 2
    _assert_same_weights(fast, "default_nonfinite_skip", other)


def test_fit_gives_the_loss_to_presets_that_read_it_except_on_jax(fast, other):
    """Keras' TensorFlow and PyTorch train steps pass the loss (`scale_loss`);
    the JAX one discards it, and the optimizer warns so."""
    for backend in ("tensorflow", other):
        expected = 0 if backend == "jax" else 20  # LOSS_FIT_STEPS
        assert float(fast[backend]["loss_fit/steps_with_loss"]) == expected, backend
    if other == "torch":
        _assert_same_weights(fast, "loss_fit", other)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["adaptive_mlp", "full_features_guard_decay", "ffn_lstm", "hyper_lstm"])
def test_other_architectures_train_the_same(slow, case, other):
    _assert_same_weights(slow, case, other)


@pytest.mark.slow
def test_mixed_precision_trains_alike(slow, other):
    # float16 forward and backward passes round differently on the
    # backends, so only the float32 cases are held to RTOL.
    _assert_same_weights(slow, "mixed_float16", other, rtol=1e-2, atol=1e-3)
