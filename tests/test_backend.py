"""keras_lopt runs on the TensorFlow, JAX and PyTorch backends and refuses others at import."""

import importlib.util
import os
import subprocess
import sys

import pytest

from keras_lopt import backend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_keras_lopt(prelude="", **env):
    environment = dict(os.environ, PYTHONPATH=REPO, **env)
    code = prelude + "import keras_lopt\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)


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
