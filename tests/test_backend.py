"""keras_lopt runs on the TensorFlow and JAX backends and refuses others at import."""

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


@pytest.mark.parametrize("name", ["torch", "numpy", "openvino"])
def test_other_backends_are_refused_by_name(name):
    with pytest.raises(
        ImportError, match=f"Keras is using the '{name}' backend.*KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
    ):
        backend.check_backend(name)
    backend.check_backend("tensorflow")
    backend.check_backend("jax")


def test_import_raises_when_keras_runs_on_another_backend():
    # Keras' other backends need their framework installed; this runs the
    # import exactly as it would under one, with Keras reporting "torch".
    result = _import_keras_lopt("import keras\nkeras.backend.backend = lambda: 'torch'\n")
    assert result.returncode != 0
    assert (
        "ImportError: keras_lopt runs on Keras' TensorFlow or JAX backend, but Keras is using the 'torch' backend"
        in result.stderr
    )


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_import_under_keras_backend_jax_succeeds():
    result = _import_keras_lopt(KERAS_BACKEND="jax")
    assert result.returncode == 0, result.stderr[-2000:]
