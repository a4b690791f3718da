"""Optimizer specs: the strings that name an optimizer on a command line.

One grammar for every command that takes optimizers (`keras-lopt
benchmark`, `tune-benchmark`, `plot trajectories`):

learned              LearnedOptimizer() with the default preset, recorded
                     as `learned:<default preset name>` so that results
                     stay attached to the preset that produced them
learned:NAME_OR_PATH LearnedOptimizer(preset=NAME_OR_PATH)
...+horizon          a learned spec trained with the
                     `keras_lopt.TrainingHorizon()` callback, which tells
                     the optimizer how long `fit` will train, e.g.
                     `learned+horizon`, `learned:saved_models/x+horizon`
adam                 Adam(1e-3), recorded as adam@0.001
adamw, sgdm          AdamW(1e-3), SGD(1e-2, momentum=0.9)
NAME                 any other Keras optimizer identifier at its Keras
                     defaults (sgd, rmsprop, adagrad, adadelta, adamax,
                     nadam, lion, ...), via `keras.optimizers.get`
...@LR               any of the above at learning rate LR, e.g. adam@3e-3
                     (recorded as adam@0.003), sgd@0.05,
                     learned:mlp_pes_v2@0.01+horizon
adam_tuned           group: Adam at each rate of `ADAM_GRID`; reports
                     pick the rate per task and per metric
classic              group: every classic Keras optimizer at its Keras
                     defaults (`CLASSIC_OPTIMIZERS`)
{"class_name": ..., "config": {...}}
                     (Python only) a Keras optimizer config, as
                     `keras.optimizers.serialize` writes it; the tuning
                     searches (`tuning.py`) run their trials this way.
"""

import dataclasses
import math
import os
from typing import Optional

__all__ = [
    "ADAM_GRID",
    "ADAM_DEFAULT",
    "CLASSIC_OPTIMIZERS",
    "HORIZON_SUFFIX",
    "Spec",
    "adam_rate",
    "build",
    "canonical",
    "expand",
    "is_learned",
    "make_optimizer",
    "make_callbacks",
    "label",
    "parse",
]

ADAM_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CLASSIC_OPTIMIZERS = ("sgd", "sgdm", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "adam", "adamw", "lion")
HORIZON_SUFFIX = "+horizon"
_GROUPS = {"classic": CLASSIC_OPTIMIZERS, "adam_tuned": tuple(f"adam@{lr:g}" for lr in ADAM_GRID)}
# Kinds built here rather than by `keras.optimizers.get`, with their
# default learning rates.
_OWN_KINDS = {"learned": None, "adam": 1e-3, "adamw": 1e-3, "sgdm": 1e-2}
ADAM_DEFAULT = f"adam@{_OWN_KINDS['adam']:g}"
_VALID = (
    "learned, learned:PRESET_OR_PATH, either with +horizon, adam, adamw, sgdm, "
    "a Keras optimizer name, any of these with @LR (e.g. adam@3e-3), adam_tuned, classic"
)


def _unknown(spec):
    return ValueError(f"Unknown optimizer spec {spec!r}. Valid: {_VALID}")


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed optimizer spec (`parse`).

    kind: `"learned"`, `"adam"`, `"adamw"`, `"sgdm"` or another Keras
        optimizer identifier (`"sgd"`, `"rmsprop"`, ...).
    preset: the preset name or normalised path (`"learned"` only).
    learning_rate: the `@LR` rate; None: the kind's default (the preset's
        own rate for `"learned"`).
    horizon: trained with the `TrainingHorizon()` callback (`"learned"` only).
    """

    kind: str
    preset: Optional[str] = None
    learning_rate: Optional[float] = None
    horizon: bool = False

    @property
    def name(self) -> str:
        """The canonical spec string (see `canonical`)."""
        head = f"learned:{self.preset}" if self.kind == "learned" else self.kind
        rate = self.learning_rate
        if rate is None and self.kind == "adam":
            rate = _OWN_KINDS["adam"]
        return head + (f"@{rate:g}" if rate is not None else "") + (HORIZON_SUFFIX if self.horizon else "")


def parse(spec) -> Spec:
    """Parses a spec string; raises a `ValueError` naming it if it is bad.

    A learned spec's preset is resolved (a missing preset is an error
    here, before anything runs) and a path is normalised.
    """
    if not isinstance(spec, str) or not spec or spec in _GROUPS:
        raise _unknown(spec)
    body, horizon = spec, False
    if body.endswith(HORIZON_SUFFIX):
        body, horizon = body[: -len(HORIZON_SUFFIX)], True
    learning_rate = None
    if "@" in body:
        body, _, rate_text = body.rpartition("@")
        try:
            learning_rate = float(rate_text)
        except ValueError:
            learning_rate = -1.0
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise _unknown(spec)
    kind, colon, preset = body.partition(":")
    if kind == "learned":
        from keras_lopt import presets

        if colon and not preset:
            raise _unknown(spec)
        preset = preset or presets.DEFAULT_PRESET
        presets.resolve(preset)  # a clear error for a missing preset, before anything runs
        if preset not in presets.list_presets():
            preset = os.path.normpath(preset)
        return Spec("learned", preset, learning_rate, horizon)
    if colon or not kind.isidentifier() or kind in _GROUPS:
        raise _unknown(spec)
    if horizon:
        raise ValueError(f"`{HORIZON_SUFFIX}` applies to learned optimizers only. Received: {spec!r}")
    if kind not in _OWN_KINDS:
        import keras

        try:
            keras.optimizers.get(kind)
        except ValueError:
            raise _unknown(spec) from None
    return Spec(kind, None, learning_rate, False)


def canonical(spec):
    """The name a spec's results are recorded under; raises on a bad spec.

    `learned` becomes `learned:<default preset>`, preset paths are
    normalised, `adam` becomes `adam@0.001` and rates are written with `%g`.
    Dict specs (Keras configs) are returned unchanged.
    """
    if isinstance(spec, dict):
        return spec
    return parse(spec).name


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
    """The learning rate of an `adam` spec, else None."""
    if isinstance(spec, str) and (spec == "adam" or spec.startswith("adam@")):
        return parse(spec).learning_rate or _OWN_KINDS["adam"]
    return None


def build(spec: Spec):
    """A fresh Keras optimizer for a parsed spec."""
    import keras

    rate = spec.learning_rate
    if spec.kind == "learned":
        import keras_lopt

        return keras_lopt.LearnedOptimizer(preset=spec.preset, learning_rate=rate)
    if spec.kind in _OWN_KINDS:
        rate = rate or _OWN_KINDS[spec.kind]
        if spec.kind == "adam":
            return keras.optimizers.Adam(rate)
        if spec.kind == "adamw":
            return keras.optimizers.AdamW(rate)
        return keras.optimizers.SGD(rate, momentum=0.9)
    optimizer = keras.optimizers.get(spec.kind)
    return optimizer if rate is None else type(optimizer)(learning_rate=rate)


def make_optimizer(spec):
    """A fresh Keras optimizer for a spec string or a Keras config dict."""
    if isinstance(spec, dict):
        import keras

        return keras.optimizers.get(spec)
    return build(parse(spec))


def make_callbacks(spec):
    """The `fit` callbacks a spec trains with (its mode)."""
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
