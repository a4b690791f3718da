"""keras_lopt runs on the TensorFlow, JAX and PyTorch backends and refuses others at import."""

import importlib.util
import os
import subprocess
import sys

import pytest

from keras_lopt import backend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_python(code, **env):
    environment = dict(os.environ, PYTHONPATH=REPO, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=900)


def _import_keras_lopt(prelude="", **env):
    return _run_python(prelude + "import keras_lopt\n", **env)


@pytest.mark.parametrize("name", ["numpy", "openvino"])
def test_other_backends_are_refused_by_name(name):
    with pytest.raises(
        ImportError, match=f"Keras is using the '{name}' backend.*KERAS_BACKEND to tensorflow, jax or torch"
    ):
        backend.check_backend(name)
    for supported in ("tensorflow", "jax", "torch"):
        backend.check_backend(supported)


def test_import_raises_when_keras_runs_on_another_backend():
    # Keras' other backends need their framework installed; this runs the
    # import exactly as it would under one, with Keras reporting "numpy".
    result = _import_keras_lopt("import keras\nkeras.backend.backend = lambda: 'numpy'\n")
    assert result.returncode != 0
    assert (
        "ImportError: keras_lopt runs on Keras' TensorFlow, JAX or PyTorch backend, but Keras is using the 'numpy' backend"
        in result.stderr
    )


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_import_under_another_supported_backend_succeeds(name):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed")
    result = _import_keras_lopt(KERAS_BACKEND=name)
    assert result.returncode == 0, result.stderr[-2000:]


# Run with TensorFlow hidden, as on a machine where only JAX or PyTorch is
# installed: `import tensorflow` fails there.
_WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None
import os, tempfile
import keras, numpy as np
import keras_lopt
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, :1] - 0.5 * x[:, 1:2]).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
model.compile(optimizer=keras_lopt.LearnedOptimizer(), loss="mse")
losses = model.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0).history["loss"]
assert losses[-1] < 0.5 * losses[0], losses
path = os.path.join(tempfile.mkdtemp(), "model.keras")
model.save(path)
restored = keras.saving.load_model(path)
assert int(restored.optimizer.iterations) == 32
for preset in keras_lopt.list_presets():
    keras_lopt.load_learned_optimizer(preset)
assert sys.modules["tensorflow"] is None
print("trained", losses)
"""


@pytest.mark.parametrize("name", ["jax", pytest.param("torch", marks=pytest.mark.slow)])
def test_trains_and_loads_every_preset_without_tensorflow(name):
    """On JAX and PyTorch the optimizer, the presets (read with numpy) and
    `.keras` files need no TensorFlow."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed")
    result = _run_python(_WITHOUT_TENSORFLOW, KERAS_BACKEND=name)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained" in result.stdout
