"""XLA's compiled programs kept on disk, so that later processes skip compiling.

Most of `LearnedOptimizer`'s first `fit` call is XLA compiling the update's
programs (one per variable shape and dtype, BENCHMARKS.md "Where the
default's first call goes"). Within one process they are compiled once
(`compiled_update`); `enable_compilation_cache` keeps them across processes:
every run of a script after the first loads them instead. It turns on the
backend's own persistent compilation cache, for every XLA program of the
process (the model's train step under `jit_compile=True` too), so it is
opt-in:

    import keras_lopt
    keras_lopt.enable_compilation_cache()  # before the first compilation
    model.compile(optimizer=keras_lopt.LearnedOptimizer())
"""

import hashlib
import os
import platform
import re
import uuid

import keras

from keras_lopt import validation

_TF_DIRECTORY_FLAG = "--tf_xla_persistent_cache_directory"
_TF_PREFIX_FLAG = "--tf_xla_persistent_cache_prefix"


def default_directory():
    """`$KERAS_HOME/keras_lopt_xla_cache` (Keras' home: `~/.keras` unless
    `KERAS_HOME` is set)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras_lopt_xla_cache")


def machine_prefix():
    """The file-name prefix of this machine's entries: `keras_lopt_<hash>`.

    A compiled CPU program uses the instruction sets of the CPU it was
    compiled on, and the compiler changes between TensorFlow versions; the
    hash covers both (the CPU model and flags from `/proc/cpuinfo` where
    there is one), so that a directory shared between machines (a network
    home) never hands one machine another's programs.
    """
    parts = [platform.machine(), platform.processor(), keras.backend.backend()]
    try:
        with open("/proc/cpuinfo") as f:
            parts += sorted({line.strip() for line in f if line.startswith(("flags", "model name"))})
    except OSError:
        pass
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        parts.append(tf.__version__)
    return "keras_lopt_" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def enable_compilation_cache(directory=None):
    """Keeps this process's compiled XLA programs in `directory`, and loads
    them from there instead of compiling again.

    Call it before the process compiles anything with XLA (at the start of a
    script): TensorFlow reads its XLA settings once, at its first
    compilation. On TensorFlow this sets `TF_XLA_FLAGS`' persistent-cache
    flags for the process and checks, with a tiny program, that TensorFlow
    writes to the directory; on JAX it sets `jax_compilation_cache_dir`.
    Entries are a few hundred KB per program; delete the directory to clear
    it. Entries are named with `machine_prefix()`, so a directory shared
    between machines gives each only programs compiled on its own CPU model
    and TensorFlow version. TensorFlow 2.21 logs one error line for each
    program it loads ("Target machine feature +prefer-no-gather is not
    supported on the host machine ... could lead to SIGILL"): XLA compares
    two tuning options stored with the program (`prefer-no-gather`,
    `prefer-no-scatter`) with the CPU's instruction sets, in which they
    never appear; the instruction sets themselves match.

    Args:
        directory: where the programs are kept (created if missing; `~` is
            expanded; no whitespace). Default: `default_directory()`.

    Returns:
        The directory, as an absolute path.

    Raises:
        RuntimeError: on TensorFlow, when the process compiled an XLA program
            before this call (the cache cannot be turned on any more), or
            `TF_XLA_FLAGS` already names another cache directory.
        ValueError: on the PyTorch backend, which compiles no XLA programs.
    """
    if directory is None:
        directory = default_directory()
    is_path = isinstance(directory, (str, os.PathLike)) and bool(str(directory))
    validation.require(is_path, "directory", directory, "a non-empty path")
    directory = os.path.abspath(os.path.expanduser(os.fspath(directory)))
    if re.search(r"\s", directory):
        # TF_XLA_FLAGS is split at whitespace.
        raise ValueError(f"`directory` must not contain whitespace. Received: directory={directory!r}")
    backend = keras.backend.backend()
    if backend == "torch":
        raise ValueError(
            "`enable_compilation_cache` applies to XLA, which Keras' PyTorch backend does not use. "
            f"Received: backend={backend!r}; it works on the TensorFlow and JAX backends."
        )
    if backend == "jax":
        import jax

        os.makedirs(directory, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", directory)
        return directory
    _enable_tensorflow(directory)
    return directory


def _enable_tensorflow(directory):
    flags = os.environ.get("TF_XLA_FLAGS", "")
    named = re.findall(rf"{_TF_DIRECTORY_FLAG}=(\S+)", flags)
    if named and os.path.abspath(named[-1]) != directory:
        raise RuntimeError(
            f"TF_XLA_FLAGS already names the XLA cache directory {named[-1]!r}. Received: directory={directory!r}"
        )
    os.makedirs(directory, exist_ok=True)
    if not named:
        added = f"{_TF_DIRECTORY_FLAG}={directory} {_TF_PREFIX_FLAG}={machine_prefix()}"
        os.environ["TF_XLA_FLAGS"] = f"{flags} {added}".strip()
    try:
        _check_tensorflow_writes(directory)
    except RuntimeError:
        # Not in effect: child processes should not inherit it either.
        os.environ["TF_XLA_FLAGS"] = flags
        if not flags:
            del os.environ["TF_XLA_FLAGS"]
        raise


def _check_tensorflow_writes(directory):
    """Compiles a program no process compiled before and checks that its
    entry appears in `directory` (then removes it)."""
    import tensorflow as tf

    before = set(os.listdir(directory))
    # A constant of its own makes the program (and its entry) new.
    constant = float(uuid.uuid4().int % 2**20)
    probe = tf.function(lambda x: x * 2.0 + constant, jit_compile=True, autograph=False)
    probe(tf.constant([1.0]))
    written = set(os.listdir(directory)) - before
    if not written:
        raise RuntimeError(
            "TensorFlow did not write to the XLA cache directory: this process compiled an XLA program "
            "before `enable_compilation_cache` was called, and TensorFlow reads its XLA settings once. "
            f"Call it at the start of the script. Received: directory={directory!r}"
        )
    for name in written:
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass
