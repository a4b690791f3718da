"""The commands of `keras-lopt` (also `python -m keras_lopt.meta`), one module per
group:

    training     meta-train, export, local-cluster
    benchmark    benchmark, tune-benchmark
    inspection   plot, presets

Their arguments are parsed by `keras_lopt_cli`, which imports this package
once they are valid: see `keras-lopt COMMAND --help`. Each command imports
what it runs (meta-training, the evaluation package, plotting) when it
runs, so the package sits above every other layer and nothing imports it.
Bad input raises a `ValueError`, which the command line prints as a
one-line error (status 2) before anything is written.
"""

from keras_lopt.cli import benchmark, inspection, training

__all__ = ["COMMANDS"]

COMMANDS = {
    "meta-train": training.meta_train,
    "local-cluster": training.local_cluster,
    "export": training.export,
    "benchmark": benchmark.benchmark,
    "tune-benchmark": benchmark.tune_benchmark,
    "presets": inspection.presets,
    "plot": inspection.plot,
}
