"""`keras_lopt.enable_compilation_cache`: compiled programs kept across processes.

Each case runs in fresh Python processes: TensorFlow reads its XLA settings
once per process, and the point is what a second process finds.
"""

import json
import os
import subprocess
import sys

import pytest

import keras_lopt
from keras_lopt import compilation_cache

TRAIN = """
import json, sys
import keras, numpy as np
import keras_lopt
directory = keras_lopt.enable_compilation_cache(sys.argv[1])
if keras.backend.backend() == "jax":
    import jax
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
model.compile(optimizer=keras_lopt.LearnedOptimizer(), loss="mse", jit_compile=sys.argv[2] == "1")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
model.fit(x, y, batch_size=16, epochs=2, verbose=0)
print("RESULT " + json.dumps({"directory": directory, "weights": [w.tolist() for w in model.get_weights()]}))
"""


def _python(code, *args, backend="tensorflow", env=None):
    environment = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    environment.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300, env=environment
    )


def _result(completed):
    assert completed.returncode == 0, completed.stderr[-3000:]
    (line,) = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


def _entries(directory):
    """`{name: (inode, mtime_ns)}` of the directory's files."""
    return {entry.name: (entry.inode(), entry.stat().st_mtime_ns) for entry in os.scandir(directory)}


def test_a_second_process_loads_the_update_programs_instead_of_compiling(tmp_path):
    """Without XLA in the train step, the update's programs are XLA programs
    of their own: the first process writes them under this machine's
    prefix (and leaves no probe entry), the second loads them (a program
    compiled again would be written again) and trains to the same weights."""
    directory = tmp_path / "cache"
    first = _result(_python(TRAIN, directory, 0))
    assert first["directory"] == str(directory)
    written = _entries(directory)
    # The two layers' four variables: one group program.
    assert len(written) == 1, sorted(written)
    prefix = _python("from keras_lopt import compilation_cache; print(compilation_cache.machine_prefix())")
    assert all(name.startswith(prefix.stdout.strip() + "__") for name in written), sorted(written)
    second = _result(_python(TRAIN, directory, 0))
    assert _entries(directory) == written
    assert second["weights"] == first["weights"]


def test_with_xla_train_steps_the_whole_step_is_kept(tmp_path):
    directory = tmp_path / "cache"
    first = _result(_python(TRAIN, directory, 1))
    written = _entries(directory)
    assert written
    second = _result(_python(TRAIN, directory, 1))
    assert _entries(directory) == written
    assert second["weights"] == first["weights"]


def test_too_late_in_the_process_is_an_error_and_leaves_no_flags(tmp_path):
    code = """
import os, sys
import tensorflow as tf
import keras_lopt
tf.function(lambda x: x + 1.0, jit_compile=True)(tf.constant(1.0))
try:
    keras_lopt.enable_compilation_cache(sys.argv[1])
except RuntimeError as error:
    print("ERROR", error)
print("FLAGS", os.environ.get("TF_XLA_FLAGS"))
"""
    completed = _python(code, tmp_path / "cache")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "ERROR TensorFlow did not write to the XLA cache directory" in completed.stdout
    assert "Call it at the start of the script" in completed.stdout
    assert "FLAGS None" in completed.stdout


def test_another_directory_in_the_flags_is_an_error(tmp_path):
    code = "import sys, keras_lopt; keras_lopt.enable_compilation_cache(sys.argv[1])"
    completed = _python(
        code, tmp_path / "mine", env={"TF_XLA_FLAGS": f"--tf_xla_persistent_cache_directory={tmp_path / 'theirs'}"}
    )
    assert completed.returncode != 0
    assert "TF_XLA_FLAGS already names the XLA cache directory" in completed.stderr
    assert not (tmp_path / "mine").exists()


def test_default_directory_is_under_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert compilation_cache.default_directory() == str(tmp_path / "keras_lopt_xla_cache")


@pytest.mark.parametrize("directory", ["", 3])
def test_bad_directories_are_refused(directory):
    with pytest.raises(ValueError, match=r"`directory` must be a non-empty path\. Received: directory="):
        keras_lopt.enable_compilation_cache(directory)


def test_a_directory_with_whitespace_is_refused(tmp_path):
    # TF_XLA_FLAGS is split at whitespace: such a flag would name another directory.
    with pytest.raises(ValueError, match=r"`directory` must not contain whitespace\. Received: directory=.*my cache"):
        keras_lopt.enable_compilation_cache(tmp_path / "my cache")
    assert not (tmp_path / "my cache").exists()


def test_jax_backend_uses_jax_cache(tmp_path):
    directory = tmp_path / "cache"
    first = _result(_python(TRAIN, directory, 1, backend="jax"))
    assert first["directory"] == str(directory)
    assert os.listdir(directory)


def test_torch_backend_is_refused_clearly(tmp_path):
    code = "import sys, keras_lopt; keras_lopt.enable_compilation_cache(sys.argv[1])"
    completed = _python(code, tmp_path / "cache", backend="torch")
    assert completed.returncode != 0
    assert "Keras' PyTorch backend does not use" in completed.stderr
    assert not (tmp_path / "cache").exists()
