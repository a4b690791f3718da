"""Optimizer specs: the strings that name an optimizer on a command line.

learned              LearnedOptimizer() with the default preset, recorded
                     as `learned:<default preset name>` so that results
                     stay attached to the preset that produced them
learned:NAME_OR_PATH LearnedOptimizer(preset=NAME_OR_PATH)
...+horizon          a learned spec trained with the
                     `keras_lopt.TrainingHorizon()` callback, which tells
                     the optimizer how long `fit` will train, e.g.
                     `learned+horizon`, `learned:saved_models/x+horizon`
adam@LR              Adam(LR), e.g. adam@3e-3, recorded as adam@0.003
adam                 Adam(1e-3), the same run as adam@0.001
adamw, sgdm          AdamW(1e-3), SGD(1e-2, momentum=0.9)
NAME                 any other Keras optimizer identifier at its Keras
                     defaults (rmsprop, adagrad, adadelta, adamax,
                     nadam, lion, ...), via `keras.optimizers.get`
adam_tuned           group: Adam at each rate of `ADAM_GRID`; reports
                     pick the rate per task and per metric
classic              group: every classic Keras optimizer at its Keras
                     defaults (`CLASSIC_OPTIMIZERS`)
{"class_name": ..., "config": {...}}
                     (Python only) a Keras optimizer config, as
                     `keras.optimizers.serialize` writes it; the tuning
                     searches (`tuning.py`) run their trials this way.
"""

import os

__all__ = [
    "ADAM_GRID",
    "ADAM_DEFAULT",
    "CLASSIC_OPTIMIZERS",
    "HORIZON_SUFFIX",
    "adam_rate",
    "canonical",
    "expand",
    "is_learned",
    "make_optimizer",
    "make_callbacks",
    "label",
]

ADAM_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
ADAM_DEFAULT = "adam@0.001"
CLASSIC_OPTIMIZERS = ("sgd", "sgdm", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "adam", "adamw", "lion")
HORIZON_SUFFIX = "+horizon"
_GROUPS = {"classic": CLASSIC_OPTIMIZERS, "adam_tuned": tuple(f"adam@{lr:g}" for lr in ADAM_GRID)}
_VALID = (
    "learned, learned:PRESET_OR_PATH, either with +horizon, adam, adam@LR, adamw, sgdm, "
    "adam_tuned, classic, or a Keras optimizer name"
)


def _unknown(spec):
    return ValueError(f"Unknown optimizer spec {spec!r}. Valid: {_VALID}")


def _adam_rate_of(spec):
    try:
        rate = float(spec[len("adam@") :])
    except ValueError:
        rate = -1.0
    if not rate > 0:
        raise _unknown(spec)
    return rate


def canonical(spec):
    """The name a spec's results are recorded under; raises on a bad spec.

    `learned` becomes `learned:<default preset>`, preset paths are
    normalised, `adam` becomes `adam@0.001` and rates are written with `%g`.
    Dict specs (Keras configs) are returned unchanged.
    """
    if isinstance(spec, dict):
        return spec
    if not isinstance(spec, str) or not spec:
        raise _unknown(spec)
    body, horizon = spec, ""
    if spec.endswith(HORIZON_SUFFIX):
        body, horizon = spec[: -len(HORIZON_SUFFIX)], HORIZON_SUFFIX
    if body == "learned" or body.startswith("learned:"):
        from keras_lopt import presets

        preset = body[len("learned:") :] if ":" in body else presets.DEFAULT_PRESET
        if not preset:
            raise _unknown(spec)
        presets.resolve(preset)  # a clear error for a missing preset, before anything runs
        if preset not in presets.list_presets():
            preset = os.path.normpath(preset)
        return f"learned:{preset}{horizon}"
    if horizon:
        raise ValueError(f"`{HORIZON_SUFFIX}` applies to learned optimizers only. Received: {spec!r}")
    if spec == "adam":
        return ADAM_DEFAULT
    if spec.startswith("adam@"):
        return f"adam@{_adam_rate_of(spec):g}"
    if spec in ("adamw", "sgdm"):
        return spec
    if spec.isidentifier() and spec not in _GROUPS:
        import keras

        try:
            keras.optimizers.get(spec)
        except ValueError:
            raise _unknown(spec) from None
        return spec
    raise _unknown(spec)


def expand(specs):
    """Replaces groups by their members and every spec by its canonical name,
    without repeats, in order. Raises on the first bad spec."""
    runs = []
    for spec in specs:
        for member in _GROUPS.get(spec, (spec,)) if isinstance(spec, str) else (spec,):
            name = canonical(member)
            if name not in runs:
                runs.append(name)
    return runs


def is_learned(spec):
    """Whether a canonical spec names a learned optimizer."""
    return isinstance(spec, str) and spec.startswith("learned:")


def adam_rate(spec):
    """The learning rate of a canonical `adam@LR` spec, else None."""
    if isinstance(spec, str) and spec.startswith("adam@"):
        return _adam_rate_of(spec)
    return None


def make_optimizer(spec):
    """A fresh Keras optimizer for a canonical spec (see `canonical`)."""
    import keras

    if isinstance(spec, dict):
        return keras.optimizers.get(spec)
    if is_learned(spec):
        import keras_lopt

        body = spec[: -len(HORIZON_SUFFIX)] if spec.endswith(HORIZON_SUFFIX) else spec
        return keras_lopt.LearnedOptimizer(preset=body[len("learned:") :])
    if spec.startswith("adam@"):
        return keras.optimizers.Adam(_adam_rate_of(spec))
    if spec == "adamw":
        return keras.optimizers.AdamW(1e-3)
    if spec == "sgdm":
        return keras.optimizers.SGD(1e-2, momentum=0.9)
    return keras.optimizers.get(spec)


def make_callbacks(spec):
    """The `fit` callbacks a canonical spec trains with (its mode)."""
    if isinstance(spec, str) and spec.endswith(HORIZON_SUFFIX):
        import keras_lopt

        return [keras_lopt.TrainingHorizon()]
    return []


def label(spec):
    """A short name for tables and legends: Adam(1e-3), Adam(3e-2), ..."""
    rate = adam_rate(spec)
    if rate is not None:
        return f"Adam({rate:.0e})".replace("e-0", "e-").replace("e+0", "e")
    return spec if isinstance(spec, str) else spec.get("class_name", "config")
