"""Small data sets for meta-training, built offline with tensorflow-datasets.

Each builder generates its examples locally and deterministically (fixed
seeds, sorted files), so preparing needs no network. Prepared data is cached
under `data_dir`: the argument, else `$KERAS_LOPT_DATA_DIR`, else
`~/.cache/keras_lopt/tensorflow_datasets`.

Names (splits "train" / "test", sizes train/test):

- `digits`: scikit-learn's 8x8 digits. x float32 [8, 8, 1] in [0, 1],
  y int64 class in [0, 10). 1437 / 360.
- `mnist1d`: 1-D digit signals after Greydanus (2020). x float32 [40],
  y int64 class in [0, 10). 4000 / 1000.
- `python_chars`: byte windows of this interpreter's standard-library
  sources. tokens int32 [129], byte values in [0, 256) (vocabulary: the 256
  bytes, text is UTF-8); inputs are `tokens[:-1]`, targets `tokens[1:]`.
  Split by file; 8597 / 2852 windows with Python 3.11 (sources differ by
  version, so the builder config is named after it, e.g. `py311`).
- `synthetic_sequences/adding` (default config): x float32 [50, 2] (value,
  marker), y float32 [] the sum of the two marked values. 4000 / 1000.
- `synthetic_sequences/parity`: x int32 [16] bits, y int32 [16] running
  parity, `y[:, -1]` is the parity of the whole sequence. 4000 / 1000.
- `synthetic_sequences/copy`: x int32 [21] = 10 symbols in [1, 9), the
  delimiter 9, 10 blanks (0); y int32 [21] = 11 blanks, then the symbols.
  4000 / 1000.
- `synthetic_sequences/sort`: x int32 [16] symbols in [0, 16), y int32 [16]
  the same symbols sorted. 4000 / 1000.
- `synthetic_regression`: x float32 [16] standard normal, y float32 [4] from
  a fixed random tanh MLP teacher (unit variance) plus N(0, 0.1^2) noise.
  4000 / 1000.
- `scaled_linear_regression`: x float32 [10], feature j standard normal
  times a scale from 1e-2 to 1e2 (log-spaced); y float32 [] a fixed linear
  function of x (unit variance) plus N(0, 0.01^2) noise. 4000 / 1000.
- `noisy_teacher_classification/selection` (default config): x float32
  [32] standard normal, y int64 class in [0, 8): the argmax of a fixed
  random tanh MLP teacher's 8 outputs, replaced by a uniformly random class
  for 20% of the examples. 4000 / 1000.
- `noisy_teacher_classification/meta`: the same recipe with another teacher,
  x [24], 6 classes. 4000 / 1000.

One module of ~530 lines, over the house's ~400: ten builders of 20 to 60
lines each on one shared base (`_ArrayBuilder`) and one cache directory,
read as a catalogue.
"""

import abc
import functools
import os
import pathlib
import sys
import sysconfig

import numpy as np
import tensorflow_datasets as tfds

_TRAIN_SIZE = 4000
_TEST_SIZE = 1000
_RELEASE_NOTES = {"1.0.0": "Initial release."}


def default_data_dir():
    """`$KERAS_LOPT_DATA_DIR`, else `~/.cache/keras_lopt/tensorflow_datasets`."""
    return os.environ.get("KERAS_LOPT_DATA_DIR") or os.path.expanduser(
        os.path.join("~", ".cache", "keras_lopt", "tensorflow_datasets")
    )


def _train_test(arrays, num_train):
    """Splits a dict of arrays [N, ...] into {"train": first, "test": rest}."""
    return {
        "train": {k: v[:num_train] for k, v in arrays.items()},
        "test": {k: v[num_train:] for k, v in arrays.items()},
    }


class _ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder whose splits are small in-memory arrays from `_split_arrays`.

    Builders skip tfds' global registry: they are reached through `builder()`,
    and importing this module twice must not clash on names.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = _RELEASE_NOTES

    def _dataset_info(self, features, supervised_keys=("x", "y"), **kwargs):
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=supervised_keys,
            disable_shuffling=True,
            **kwargs,
        )

    @abc.abstractmethod
    def _split_arrays(self):
        """Returns {split: {feature: array [N, ...]}}."""

    # tfds' own lines announce "Downloading and preparing dataset Unknown
    # size" and "downloaded": nothing is downloaded here, and the size is
    # known once the data is written. (tfds has no public hook for these.)
    def _log_download_bytes(self):
        print(
            f"Preparing data set {self.name!r} (generated locally, no download) in {os.fspath(self.data_dir)}...",
            flush=True,
        )

    def _log_download_done(self):
        print(
            f"Prepared data set {self.name!r}: {self.info.dataset_size} in "
            f"{os.fspath(self.data_dir)}. Later calls reuse it.",
            flush=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is generated locally.
        return {split: self._generate_examples(arrays) for split, arrays in self._split_arrays().items()}

    def _generate_examples(self, arrays):
        num_examples = len(next(iter(arrays.values())))
        for i in range(num_examples):
            yield i, {name: values[i] for name, values in arrays.items()}


class Digits(_ArrayBuilder, skip_registration=True):
    """scikit-learn's 8x8 handwritten digits, scaled to [0, 1]; 80/20 split."""

    name = "digits"

    def _info(self):
        return self._dataset_info(
            {
                "x": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
                "y": tfds.features.ClassLabel(num_classes=10),
            },
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        )

    def _split_arrays(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.default_rng(0).permutation(len(digits.target))
        arrays = {
            "x": (digits.images[order, :, :, None] / 16.0).astype(np.float32),
            "y": digits.target[order].astype(np.int64),
        }
        return _train_test(arrays, int(0.8 * len(order)))


_MNIST1D_TEMPLATES = np.array(
    [
        [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
        [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
        [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
        [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
        [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
        [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
        [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
        [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
    ]
)


def _resample(signal, length):
    """Linear interpolation of a [T] signal onto `length` evenly spaced points."""
    return np.interp(np.linspace(0, 1, length), np.linspace(0, 1, len(signal)), signal)


def _smooth(noise, sigma):
    """Gaussian filter along the last axis of [N, T] (reflected edges)."""
    radius = int(4 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.pad(noise, ((0, 0), (radius, radius)), mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, len(kernel), axis=1)
    return windows @ (kernel / kernel.sum())


def mnist1d(num_examples, seed, length=40):
    """Generates MNIST-1D signals (Greydanus 2020, default arguments).

    Each class template (12 points) is zero-padded by 36..60 points,
    stretched to 72 points, scaled by 1 +- 0.2, shifted circularly by up to
    47 points; the padding is replaced by smoothed noise, iid noise is added,
    then a random linear shear, and the result is resampled to `length`.

    Returns:
        x: float32 [num_examples, length]; y: int64 [num_examples], balanced.
    """
    rng = np.random.default_rng(seed)
    templates = _MNIST1D_TEMPLATES - _MNIST1D_TEMPLATES.mean(1, keepdims=True)
    templates /= templates.std(1, keepdims=True)
    templates = (templates - templates[:, :1]) / 6.0  # Starts and ends at 0.
    template_length, max_padding, stretched_length = 12, 60, 72
    y = rng.permutation(np.arange(num_examples) % 10)
    padding = rng.integers(36, max_padding + 1, num_examples)
    scale = 1 + 0.4 * (rng.random(num_examples) - 0.5)
    shift = rng.integers(0, 48, num_examples)
    shear = 0.75 * (rng.random(num_examples) - 0.5)
    x = np.stack(
        [
            np.roll(
                _resample(
                    np.concatenate([templates[label] + 1e-8, np.zeros(pad)]),
                    template_length + max_padding,
                ),
                k,
            )
            for label, pad, k in zip(y, padding, shift)
        ]
    )
    x *= scale[:, None]
    correlated = _smooth(0.25 * rng.standard_normal(x.shape), sigma=2.0)
    x = np.where(x != 0, x, correlated)
    x += 0.02 * rng.standard_normal(x.shape)
    x -= shear[:, None] * np.linspace(-0.5, 0.5, stretched_length)
    x = np.stack([_resample(row, length) for row in x])
    return x.astype(np.float32), y.astype(np.int64)


class Mnist1d(_ArrayBuilder, skip_registration=True):
    """MNIST-1D: ten 1-D template shapes, randomly padded, shifted, scaled,
    sheared and noised, resampled to 40 points (Greydanus 2020)."""

    name = "mnist1d"

    def _info(self):
        return self._dataset_info(
            {
                "x": tfds.features.Tensor(shape=(40,), dtype=np.float32),
                "y": tfds.features.ClassLabel(num_classes=10),
            },
            homepage="https://github.com/greydanus/mnist1d",
            citation=(
                "@article{greydanus2020scaling, title={Scaling down deep "
                "learning}, author={Greydanus, Sam}, journal={arXiv preprint "
                "arXiv:2011.14439}, year={2020}}"
            ),
        )

    def _split_arrays(self):
        x, y = mnist1d(_TRAIN_SIZE + _TEST_SIZE, seed=42)
        return _train_test({"x": x, "y": y}, _TRAIN_SIZE)


class PythonChars(_ArrayBuilder, skip_registration=True):
    """Byte-level windows of the Python standard library's source code.

    The top-level `*.py` files of `sysconfig.get_paths()["stdlib"]` up to
    100 kB each, in sorted order until 1.5 MB; every 5th file is held out for
    "test". Windows of 129 bytes start every 128 bytes of a file. The builder
    config names the Python version, whose sources differ.
    """

    name = "python_chars"
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(
            name="py{}{}".format(*sys.version_info[:2]),
            description="Sources of the running Python version.",
        )
    ]
    SEQUENCE_LENGTH = 128
    MAX_FILE_BYTES = 100_000
    MAX_TOTAL_BYTES = 1_500_000

    def _info(self):
        return self._dataset_info(
            {"tokens": tfds.features.Tensor(shape=(self.SEQUENCE_LENGTH + 1,), dtype=np.int32)},
            supervised_keys=None,
            homepage="https://docs.python.org/3/library/",
        )

    def source_files(self):
        """The standard-library files used, sorted: list of `pathlib.Path`."""
        stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
        files, total = [], 0
        for path in sorted(stdlib.glob("*.py")):
            size = path.stat().st_size
            if size > self.MAX_FILE_BYTES:
                continue
            if total + size > self.MAX_TOTAL_BYTES:
                break
            files.append(path)
            total += size
        return files

    def _windows(self, path):
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.int32)
        step = self.SEQUENCE_LENGTH
        starts = np.arange(0, len(data) - step, step)
        return data[starts[:, None] + np.arange(step + 1)]

    def _split_arrays(self):
        windows = {"train": [], "test": []}
        for i, path in enumerate(self.source_files()):
            windows["test" if i % 5 == 4 else "train"].append(self._windows(path))
        return {split: {"tokens": np.concatenate(parts)} for split, parts in windows.items()}


def _adding(rng, num_examples, length=50):
    """Hochreiter's adding problem: x [N, L, 2] (value, marker), y [N]."""
    values = rng.random((num_examples, length))
    first = rng.integers(0, length // 2, num_examples)
    second = rng.integers(length // 2, length, num_examples)
    markers = np.zeros((num_examples, length))
    markers[np.arange(num_examples), first] = 1.0
    markers[np.arange(num_examples), second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    return x, (values * markers).sum(1).astype(np.float32)


def _parity(rng, num_examples, length=16):
    """Bits x [N, L] and their running parity y [N, L]."""
    bits = rng.integers(0, 2, (num_examples, length))
    return bits.astype(np.int32), (np.cumsum(bits, 1) % 2).astype(np.int32)


def _copy(rng, num_examples, length=10, num_symbols=8):
    """Delayed recall: x = symbols, delimiter, blanks; y = blanks, symbols.

    Symbols are in [1, num_symbols], the delimiter is num_symbols + 1 and the
    blank 0. Shapes [N, 2 * length + 1].
    """
    symbols = rng.integers(1, num_symbols + 1, (num_examples, length))
    blanks = np.zeros((num_examples, length), np.int64)
    delimiter = np.full((num_examples, 1), num_symbols + 1)
    x = np.concatenate([symbols, delimiter, blanks], axis=1)
    y = np.concatenate([blanks, np.zeros_like(delimiter), symbols], axis=1)
    return x.astype(np.int32), y.astype(np.int32)


def _reverse(rng, num_examples, length=8, num_symbols=6):
    """Reversed recall: x = symbols, delimiter, blanks; y = blanks, the
    symbols in reverse order.

    As `_copy` (symbols in [1, num_symbols], delimiter num_symbols + 1,
    blank 0), but the last symbol read is the first recalled. Shapes
    [N, 2 * length + 1].
    """
    x, y = _copy(rng, num_examples, length, num_symbols)
    y[:, length + 1 :] = x[:, length - 1 :: -1]
    return x, y


def _sort(rng, num_examples, length=16, num_symbols=16):
    """Symbols x [N, L] in [0, num_symbols) and y [N, L], each row sorted."""
    symbols = rng.integers(0, num_symbols, (num_examples, length))
    return symbols.astype(np.int32), np.sort(symbols, axis=1).astype(np.int32)


_SEQUENCE_TASKS = {
    "adding": (_adding, ((50, 2), np.float32), ((), np.float32)),
    "parity": (_parity, ((16,), np.int32), ((16,), np.int32)),
    "copy": (_copy, ((21,), np.int32), ((21,), np.int32)),
    "sort": (_sort, ((16,), np.int32), ((16,), np.int32)),
    "reverse": (_reverse, ((17,), np.int32), ((17,), np.int32)),
}


class SyntheticSequences(_ArrayBuilder, skip_registration=True):
    """Synthetic sequence tasks, one per config: adding, parity, copy, sort, reverse."""

    name = "synthetic_sequences"
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=generate.__doc__)
        for name, (generate, _, _) in _SEQUENCE_TASKS.items()
    ]

    def _info(self):
        _, (x_shape, x_dtype), (y_shape, y_dtype) = _SEQUENCE_TASKS[self.builder_config.name]
        return self._dataset_info(
            {
                "x": tfds.features.Tensor(shape=x_shape, dtype=x_dtype),
                "y": tfds.features.Tensor(shape=y_shape, dtype=y_dtype),
            }
        )

    def _split_arrays(self):
        generate = _SEQUENCE_TASKS[self.builder_config.name][0]
        x, y = generate(np.random.default_rng(7), _TRAIN_SIZE + _TEST_SIZE)
        return _train_test({"x": x, "y": y}, _TRAIN_SIZE)


class SyntheticRegression(_ArrayBuilder, skip_registration=True):
    """Regression on a fixed random teacher: x ~ N(0, I) [16] -> tanh MLP
    (64 hidden units, outputs scaled to unit variance) + N(0, 0.1^2) noise
    -> y [4]."""

    name = "synthetic_regression"
    INPUTS, HIDDEN, OUTPUTS, NOISE = 16, 64, 4, 0.1

    def _info(self):
        return self._dataset_info(
            {
                "x": tfds.features.Tensor(shape=(self.INPUTS,), dtype=np.float32),
                "y": tfds.features.Tensor(shape=(self.OUTPUTS,), dtype=np.float32),
            }
        )

    def _split_arrays(self):
        rng = np.random.default_rng(3)
        num_examples = _TRAIN_SIZE + _TEST_SIZE
        w1 = rng.normal(0, self.INPUTS**-0.5, (self.INPUTS, self.HIDDEN))
        b1 = rng.normal(0, 0.1, self.HIDDEN)
        w2 = rng.normal(0, self.HIDDEN**-0.5, (self.HIDDEN, self.OUTPUTS))
        x = rng.standard_normal((num_examples, self.INPUTS))
        y = np.tanh(x @ w1 + b1) @ w2
        y = y / y.std(0) + self.NOISE * rng.standard_normal(y.shape)
        arrays = {"x": x.astype(np.float32), "y": y.astype(np.float32)}
        return _train_test(arrays, _TRAIN_SIZE)


class ScaledLinearRegression(_ArrayBuilder, skip_registration=True):
    """Ill-conditioned linear regression: x [10], feature j = z_j * scale_j
    with z ~ N(0, 1) and scales log-spaced from 1e-2 to 1e2; y [] = z @ u
    (u fixed, |u| = 1) plus N(0, 0.01^2) noise. The least-squares weights
    u_j / scale_j span four orders of magnitude, the input covariance eight."""

    name = "scaled_linear_regression"
    FEATURES, MIN_SCALE, MAX_SCALE, NOISE = 10, 1e-2, 1e2, 0.01

    def _info(self):
        return self._dataset_info(
            {
                "x": tfds.features.Tensor(shape=(self.FEATURES,), dtype=np.float32),
                "y": tfds.features.Tensor(shape=(), dtype=np.float32),
            }
        )

    def _split_arrays(self):
        rng = np.random.default_rng(11)
        num_examples = _TRAIN_SIZE + _TEST_SIZE
        scales = np.geomspace(self.MIN_SCALE, self.MAX_SCALE, self.FEATURES)
        u = rng.standard_normal(self.FEATURES)
        u /= np.linalg.norm(u)
        z = rng.standard_normal((num_examples, self.FEATURES))
        y = z @ u + self.NOISE * rng.standard_normal(num_examples)
        arrays = {"x": (z * scales).astype(np.float32), "y": y.astype(np.float32)}
        return _train_test(arrays, _TRAIN_SIZE)


# config -> (seed, inputs, classes): the selection suite's data set and
# another draw of the same recipe for meta-training families.
_NOISY_TEACHERS = {"selection": (19, 32, 8), "meta": (23, 24, 6)}


class NoisyTeacherClassification(_ArrayBuilder, skip_registration=True):
    """Classification with label noise: x ~ N(0, I) [inputs] -> the argmax of
    a fixed random tanh MLP teacher (64 hidden units); 20% of the labels
    (train and test) replaced by a uniformly random class. A model fits the
    clean labels quickly and the noisy ones only by memorising 4000
    examples: its gradients stay noisy for thousands of steps, as on a
    mid-size real data set, unlike the small sets that are memorised early.
    Configs: "selection" (32 inputs, 8 classes; the selection suite's) and
    "meta" (another teacher: 24 inputs, 6 classes; meta-training's)."""

    name = "noisy_teacher_classification"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in _NOISY_TEACHERS]
    HIDDEN, LABEL_NOISE = 64, 0.2

    def _info(self):
        _, inputs, _ = _NOISY_TEACHERS[self.builder_config.name]
        return self._dataset_info(
            {
                "x": tfds.features.Tensor(shape=(inputs,), dtype=np.float32),
                "y": tfds.features.Tensor(shape=(), dtype=np.int64),
            }
        )

    def _split_arrays(self):
        seed, inputs, classes = _NOISY_TEACHERS[self.builder_config.name]
        rng = np.random.default_rng(seed)
        num_examples = _TRAIN_SIZE + _TEST_SIZE
        w1 = rng.normal(0, inputs**-0.5, (inputs, self.HIDDEN))
        w2 = rng.normal(0, self.HIDDEN**-0.5, (self.HIDDEN, classes))
        x = rng.standard_normal((num_examples, inputs))
        y = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
        noisy = rng.random(num_examples) < self.LABEL_NOISE
        y[noisy] = rng.integers(0, classes, noisy.sum())
        arrays = {"x": x.astype(np.float32), "y": y.astype(np.int64)}
        return _train_test(arrays, _TRAIN_SIZE)


DATASETS = {
    cls.name: cls
    for cls in (
        Digits,
        Mnist1d,
        PythonChars,
        SyntheticSequences,
        SyntheticRegression,
        ScaledLinearRegression,
        NoisyTeacherClassification,
    )
}


def dataset_names():
    """Valid `name`s: each data set, and `name/config` where there is a choice."""
    names = []
    for name, cls in DATASETS.items():
        names.append(name)
        if len(cls.BUILDER_CONFIGS) > 1:
            names += [f"{name}/{config.name}" for config in cls.BUILDER_CONFIGS]
    return names


def builder(name, data_dir=None):
    """The (unprepared) tfds builder for `name`, e.g. "synthetic_sequences/copy".

    Args:
        name: one of `dataset_names()`.
        data_dir: cache folder; defaults to `default_data_dir()`.
    """
    if name not in dataset_names():
        raise ValueError(f"`name` must be one of {dataset_names()}. Received: name={name!r}")
    dataset, _, config = name.partition("/")
    return DATASETS[dataset](data_dir=data_dir or default_data_dir(), config=config or None)


def load_numpy(name, split, data_dir=None):
    """Prepares `name` if needed and returns a whole split as numpy arrays.

    Args:
        name: one of `dataset_names()`.
        split: "train", "test" or a tfds split expression like "train[:10%]".
        data_dir: cache folder; defaults to `default_data_dir()`.

    Returns:
        A new dict {feature: read-only array [N, ...]}; the arrays are cached
        in memory per (name, split, data_dir).
    """
    return dict(_load_numpy(name, split, os.fspath(data_dir or default_data_dir())))


@functools.cache
def _load_numpy(name, split, data_dir):
    dataset = builder(name, data_dir)
    # Never fetch a same-named prepared data set from tfds' GCS bucket.
    dataset.download_and_prepare(
        download_dir=os.path.join(data_dir, "downloads"),
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
    )
    arrays = tfds.as_numpy(dataset.as_dataset(split=split, batch_size=-1))
    for values in arrays.values():
        values.flags.writeable = False
    return arrays
