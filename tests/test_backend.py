"""keras_lopt needs Keras' TensorFlow backend and says so at import."""

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
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.mark.parametrize("name", ["jax", "torch", "numpy", "openvino"])
def test_other_backends_are_refused_by_name(name):
    with pytest.raises(ImportError, match=f"Keras is using the '{name}' backend.*KERAS_BACKEND=tensorflow"):
        backend.check_backend(name)
    backend.check_backend("tensorflow")


def test_import_raises_when_keras_runs_on_another_backend():
    # Keras' other backends need their framework installed; this runs the
    # import exactly as it would under one, with Keras reporting "jax".
    result = _import_keras_lopt("import keras\nkeras.backend.backend = lambda: 'jax'\n")
    assert result.returncode != 0
    assert "ImportError: keras_lopt needs Keras' TensorFlow backend, but Keras is using the 'jax' backend" in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_import_under_keras_backend_jax_raises():
    result = _import_keras_lopt(KERAS_BACKEND="jax")
    assert "Keras is using the 'jax' backend" in result.stderr, result.stderr[-2000:]
