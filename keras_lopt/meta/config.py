"""Meta-training configuration: validated dataclasses, read from JSON.

The names a config may use (estimators, architectures, feature sets,
objectives, task families) are read from the registries that define them,
so there is one list of each. That costs nothing at import: every
`keras_lopt` module starts TensorFlow (the package imports the optimizer),
so no module in the package could validate a config without it.
`keras_lopt_cli` parses the command line without TensorFlow; the config
file is read by the command, before anything is built or written.
"""

import dataclasses
import json
import os
from typing import Optional, Tuple

from keras_lopt import features, validation
from keras_lopt.layers import ADAPTIVE_KINDS, ARCHITECTURES
from keras_lopt.meta import families
from keras_lopt.meta.estimators import ESTIMATORS as _ESTIMATOR_CLASSES
from keras_lopt.meta.unroll import OBJECTIVES

ESTIMATORS = tuple(_ESTIMATOR_CLASSES)
ARCHITECTURE_NAMES = tuple(sorted(ARCHITECTURES))
FEATURE_SET_NAMES = tuple(sorted(features.FEATURE_SETS))
FAMILY_NAMES = tuple(families.family_names())


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """How gradients of the meta-loss are estimated (see `estimators`).

    Args:
        kind: one of `ESTIMATORS`.
        num_pairs: antithetic pairs per task (population = 2 * num_pairs).
        sigma: standard deviation of the weight perturbations.
        truncation_length: inner steps per estimate.
        min_horizon, max_horizon: range of trajectory lengths (truncated
            kinds only); ignored by `es`, whose horizon is one truncation.
        horizon_visible_fraction: probability that a trajectory's rule is
            told its horizon; the others train as `LearnedOptimizer` does
            without `total_steps`, so the rule learns to work both ways.
        es_horizons: `es` only: unroll lengths, one drawn uniformly for each
            estimate (one compiled unroll per task structure serves them
            all). Empty: every unroll is `truncation_length` steps.
        loss_visible_fraction: probability that a trajectory's rule is
            told the training loss (networks that read it only); the others
            see `loss_known` = 0, as `LearnedOptimizer` without a loss.
        normalize_differences: divide each task's antithetic differences
            `(L+ - L-) / (2 sigma)` by their root mean square over the pairs
            before they weight the directions, so that every task of an
            outer step contributes a step of the same size whatever its
            sensitivity to the meta-weights (a per-task fitness
            normalisation; without it the most sensitive family dominates).
    """

    kind: str = "pes"
    num_pairs: int = 4
    sigma: float = 0.01
    truncation_length: int = 20
    min_horizon: int = 100
    max_horizon: int = 1000
    horizon_visible_fraction: float = 0.5
    es_horizons: Tuple[int, ...] = ()
    loss_visible_fraction: float = 0.5
    normalize_differences: bool = False

    def __post_init__(self):
        object.__setattr__(self, "es_horizons", tuple(self.es_horizons))
        validation.boolean("normalize_differences", self.normalize_differences)
        validation.fraction("loss_visible_fraction", self.loss_visible_fraction)
        for horizon in self.es_horizons:
            validation.positive_int("es_horizons[i]", horizon)
        if self.es_horizons and self.kind != "es":
            raise ValueError(
                "`es_horizons` applies to kind='es' only. Received: "
                f"kind={self.kind!r}, es_horizons={list(self.es_horizons)}"
            )
        validation.one_of("kind", self.kind, ESTIMATORS)
        for name in ("num_pairs", "truncation_length", "min_horizon", "max_horizon"):
            validation.positive_int(name, getattr(self, name))
        validation.positive_number("sigma", self.sigma, rule="a positive number")
        validation.fraction("horizon_visible_fraction", self.horizon_visible_fraction)
        if self.kind != "es" and self.min_horizon > self.max_horizon:
            raise ValueError(
                "`min_horizon` must not exceed `max_horizon`. Received: "
                f"min_horizon={self.min_horizon}, max_horizon={self.max_horizon}"
            )


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """The learned-optimizer network to meta-train.

    Args:
        architecture: one of `ARCHITECTURE_NAMES`: `"mlp"` (`MLPNetwork`),
            `"adaptive_mlp"` (`AdaptiveMLPNetwork`: a direction MLP and a
            per-tensor step-size controller), `"adaptive_loss_mlp"`
            (`AdaptiveLossMLPNetwork`: the same, its controller also reading
            the loss trend),
            `"ffn_lstm"` (`FFNLSTMNetwork`) or `"hyper_lstm"`
            (`HyperLSTMNetwork`).
        hidden_sizes, activation, magnitude_scale, max_log_multiplier: the
            per-parameter MLP (of every architecture; the adaptive ones have no
            magnitude output and ignores the last two).
        controller_hidden_size: the step-size controller's width
            (adaptive architectures only; None: 8).
        log_step_range: `(low, high)`, the bounds of the controller's log
            step size, `low <= 0 <= high` (adaptive architectures only; None: the
            layer's default, (-7, 5)).
        odd_direction: the direction is the odd part of the direction MLP in
            the element features, zero at zero gradient and momenta whatever
            the weights (adaptive architectures only; `AdaptiveMLPNetwork`).
        lstm_hidden_size: the per-tensor LSTM's width (LSTM architectures
            only; None: 4).
        bank_size: the number of mixed MLP weight sets (`"hyper_lstm"`
            only; None: 4).
        feature_set: the network's inputs, one of `FEATURE_SET_NAMES`
            (`keras_lopt.features.FEATURE_SETS`): `"full"`, or `"local"`
            without the features normalised by whole-tensor statistics
            (cheaper per step).
    """

    hidden_sizes: Tuple[int, ...] = (4, 4)
    activation: str = "relu"
    magnitude_scale: float = 0.1
    max_log_multiplier: Optional[float] = None
    architecture: str = "mlp"
    lstm_hidden_size: Optional[int] = None
    bank_size: Optional[int] = None
    feature_set: str = "full"
    controller_hidden_size: Optional[int] = None
    log_step_range: Optional[Tuple[float, float]] = None
    odd_direction: bool = False

    def __post_init__(self):
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        validation.one_of("feature_set", self.feature_set, FEATURE_SET_NAMES)
        if self.max_log_multiplier is not None:
            validation.positive_number("max_log_multiplier", self.max_log_multiplier, rule="a positive number")
        validation.one_of("architecture", self.architecture, ARCHITECTURE_NAMES)
        # Architecture-specific settings: (field, the architectures it
        # applies to, how the message names them, its check). A field at
        # its unset value (None, or False for a switch) is not checked.
        for name, applies_to, which, check in (
            (
                "odd_direction",
                ADAPTIVE_KINDS,
                "architecture='adaptive_mlp' or 'adaptive_loss_mlp'",
                validation.boolean,
            ),
            (
                "controller_hidden_size",
                ADAPTIVE_KINDS,
                "architecture='adaptive_mlp' or 'adaptive_loss_mlp'",
                validation.positive_int,
            ),
            (
                "log_step_range",
                ADAPTIVE_KINDS,
                "architecture='adaptive_mlp' or 'adaptive_loss_mlp'",
                validation.interval_around_zero,
            ),
            ("lstm_hidden_size", ("ffn_lstm", "hyper_lstm"), "the LSTM architectures", validation.positive_int),
            ("bank_size", ("hyper_lstm",), "architecture='hyper_lstm'", validation.positive_int),
        ):
            value = getattr(self, name)
            if value is None or value is False:
                continue
            if self.architecture not in applies_to:
                raise ValueError(
                    f"`{name}` applies to {which} only. Received: architecture={self.architecture!r}, {name}={value!r}"
                )
            object.__setattr__(self, name, check(name, value))


@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
    """Everything that defines a meta-training run; with `seed` it is reproducible.

    Args:
        name: name of the preset the run exports.
        task_families: names from `FAMILY_NAMES`.
        estimator: `EstimatorConfig`.
        objective: meta-objective, one of `OBJECTIVES`: the mean over the
            truncation ("mean"), its last step ("final") or its last tenth
            ("tail") of log(training loss / initial loss), or the mean of the
            same on validation batches ("validation"), or the last tenth on
            validation batches ("validation_tail"), or the last tenth of the
            mean of the training and the validation values ("joint_tail":
            lowering one loss by raising the other as much, in log terms,
            scores nothing). "tail" scores where a
            run ends, like "final", with a tenth of its minibatch noise.
        min_loss_ratio: loss ratios below this earn no more meta-reward.
        outer_steps: number of meta-weight updates.
        outer_learning_rate: Adam learning rate on the meta-weights.
        max_grad_norm: the gradient estimate is clipped to this global norm.
        tasks_per_step: tasks whose estimates are averaged per outer step.
        inner_learning_rate: the rule's `learning_rate` during meta-training
            (becomes the preset's default learning rate).
        fan_in_base: each kernel's learning rate is scaled by `min(1,
            fan_in_base / fan_in)` (`keras_lopt.fan_in`), in meta-training
            and in the exported preset; None: no scaling.
        network: `NetworkConfig`.
        init_preset: preset whose weights start meta-training (must have the
            same architecture), or None for a seeded random start.
        seed: seeds every random choice of the run.
        checkpoint_every: outer steps between checkpoints.
        eval_every: outer steps between held-out evaluations (0: never).
        eval_tasks: held-out tasks per family in each evaluation.
        eval_horizon: inner steps of each held-out evaluation run.
        eval_members: trajectories (seeds) of one held-out evaluation run,
            trained together. `2 * num_pairs` reuses the training program
            (no extra compilation per task structure).
        parameter_scale_range: `(low, high)`: each trajectory trains its
            task reparametrised as `theta = phi / c` with `c` log-uniform in
            this range (drawn from the trajectory seed): the rule sees
            parameters `c` times larger and gradients `c` times smaller, so
            the step size it needs changes by `c`. `(1, 1)`: off.
        init_pool_size: None: every trajectory builds its task's Keras model
            afresh for its initial weights. N: N initialisations per task
            structure are built once, and each trajectory starts from one of
            them with every weight tensor of rank >= 2 permuted along each
            axis and sign-flipped along its first and last (seeded), which
            keeps the initialisers' distributions (symmetric i.i.d. or
            orthogonal) and costs no model building.
        frozen_weights: names of the network's weights (`weight_names()`,
            e.g. `"kernel_0"`) that keep their initial values: the estimator
            does not perturb them and the outer step does not move them.
            Meta-trains one part of a rule with the rest fixed, e.g. the
            step-size controller of an `"adaptive_mlp"` with its direction
            MLP frozen. Empty: every weight is meta-trained.
    """

    name: str = "meta_trained_v1"
    task_families: Tuple[str, ...] = ("quadratic",)
    estimator: EstimatorConfig = EstimatorConfig()
    objective: str = "mean"
    min_loss_ratio: float = 1e-12
    outer_steps: int = 100
    outer_learning_rate: float = 3e-3
    max_grad_norm: float = 1.0
    tasks_per_step: int = 1
    inner_learning_rate: float = 1e-3
    fan_in_base: Optional[float] = None
    network: NetworkConfig = NetworkConfig()
    init_preset: Optional[str] = "adam_equivalent_v1"
    seed: int = 0
    checkpoint_every: int = 10
    eval_every: int = 50
    eval_tasks: int = 2
    eval_horizon: int = 200
    eval_members: int = 1
    parameter_scale_range: Tuple[float, float] = (1.0, 1.0)
    init_pool_size: Optional[int] = None
    frozen_weights: Tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "task_families", tuple(self.task_families))
        object.__setattr__(self, "frozen_weights", tuple(self.frozen_weights))
        for name in self.frozen_weights:
            validation.require(isinstance(name, str), "frozen_weights[i]", name, "a weight name (a string)")
        if len(set(self.frozen_weights)) != len(self.frozen_weights):
            raise ValueError(
                f"`frozen_weights` names a weight twice. Received: frozen_weights={list(self.frozen_weights)!r}"
            )
        if not self.task_families:
            raise ValueError("`task_families` must name at least one family. Received: task_families=()")
        for family in self.task_families:
            if family not in FAMILY_NAMES:
                raise ValueError(f"Unknown task family {family!r}. Valid names: {list(FAMILY_NAMES)}")
        validation.one_of("objective", self.objective, OBJECTIVES)
        for name in ("outer_steps", "tasks_per_step", "checkpoint_every", "eval_tasks", "eval_horizon", "eval_members"):
            validation.positive_int(name, getattr(self, name))
        if self.init_pool_size is not None:
            validation.positive_int("init_pool_size", self.init_pool_size)
        scale_range = tuple(self.parameter_scale_range)
        object.__setattr__(self, "parameter_scale_range", scale_range)
        validation.require(len(scale_range) == 2, "parameter_scale_range", list(scale_range), "`(low, high)`")
        for value in scale_range:
            validation.positive_number("parameter_scale_range[i]", value, rule="a positive number")
        if scale_range[0] > scale_range[1]:
            raise ValueError(
                f"`parameter_scale_range` must have low <= high. Received: parameter_scale_range={list(scale_range)!r}"
            )
        validation.non_negative_int("eval_every", self.eval_every)
        validation.non_negative_int("seed", self.seed)
        validation.require(
            validation.is_number(self.min_loss_ratio) and 0 < self.min_loss_ratio < 1,
            "min_loss_ratio",
            self.min_loss_ratio,
            "in (0, 1)",
        )
        for name in ("outer_learning_rate", "max_grad_norm", "inner_learning_rate"):
            validation.positive_number(name, getattr(self, name), rule="a positive number")
        if self.fan_in_base is not None:
            validation.positive_number("fan_in_base", self.fan_in_base)

    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self), sort_keys=True))

    # Fields that only say when to stop: a run may be extended by raising them.
    EXTENDABLE_FIELDS = ("outer_steps",)

    def run_differences(self, saved):
        """Top-level fields on which a checkpoint's config dict differs from this run.

        Fields added to the config after the checkpoint was written count as
        equal when this config keeps their default; `EXTENDABLE_FIELDS` never
        count, so a finished run can be continued with a larger `outer_steps`.
        Returns a sorted list of field names (empty: same run).
        """
        defaults = MetaTrainConfig().to_dict()
        merged = {**defaults, **saved}
        for key in ("estimator", "network"):
            merged[key] = {**defaults[key], **saved.get(key, {})}
        current = self.to_dict()
        return sorted(
            key
            for key in set(merged) | set(current)
            if key not in self.EXTENDABLE_FIELDS and merged.get(key) != current.get(key)
        )

    @classmethod
    def from_dict(cls, values):
        """Builds a config from plain JSON values; unknown keys are errors."""
        values = dict(values)
        _check_keys(cls, values, "config")
        if "estimator" in values:
            _check_keys(EstimatorConfig, values["estimator"], "estimator")
            values["estimator"] = EstimatorConfig(**values["estimator"])
        if "network" in values:
            _check_keys(NetworkConfig, values["network"], "network")
            values["network"] = NetworkConfig(**values["network"])
        return cls(**values)

    @classmethod
    def from_file(cls, path):
        if not os.path.isfile(path):
            raise ValueError(f"Config file not found: {path!r}")
        try:
            with open(path) as f:
                values = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"Config file {path!r} is not valid JSON: {e}") from None
        if not isinstance(values, dict):
            raise ValueError(f"Config file {path!r} must hold a JSON object. Received: {type(values).__name__}")
        return cls.from_dict(values)


def _check_keys(cls, values, where):
    if not isinstance(values, dict):
        raise ValueError(f"`{where}` must be a JSON object. Received: {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown key(s) in `{where}`: {unknown}. Valid keys: {sorted(known)}")
