"""MetaTrainer: the outer loop that meta-trains a learned optimizer.

Each outer step asks `tasks_per_step` TaskWorkers for ES gradient estimates,
averages and clips them, and takes an Adam step on the flat meta-weights.
Every random choice is derived from `(config.seed, outer step, task slot)`,
and a checkpoint holds everything else (meta-weights, Adam moments, the inner
trajectories in flight), so a run killed at any point resumes bit-exactly
from its last checkpoint.

With a `distributed.StrategyCollective`, the task slots (and the held-out
evaluation runs) are shared among the strategy's replicas and summed
exactly, so any number of workers takes the same outer steps as one
process; only the chief writes files.

Output directory layout:

    config.json          the run's config
    checkpoint.npz       latest checkpoint (written atomically)
    tensorboard/         scalars: meta_loss, grad_norm, inner losses, eval
    preset/              the exported preset (after `export`)
"""

import contextlib
import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_lopt import features, presets, savedmodel
from keras_lopt.layers import ARCHITECTURES, AdaptiveMLPNetwork, MLPNetwork
from keras_lopt.meta import distributed, estimators, tasks, unroll

CHECKPOINT_FILE = "checkpoint.npz"
CONFIG_FILE = "config.json"
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPSILON = 1e-8
# Seeds of held-out evaluation trajectories start here; training draws
# trajectory seeds below 2**31 - 1 from its own stream, so a collision is
# possible but has no systematic effect.
_EVAL_SEED_BASE = 2**31 - 1000


def build_network(config):
    """The network a config describes (randomly initialised): an
    `MLPNetwork`, `AdaptiveMLPNetwork`, `FFNLSTMNetwork` or `HyperLSTMNetwork`."""
    network = config.network
    num_features = len(features.feature_names(network.feature_set))
    if network.architecture == AdaptiveMLPNetwork.kind:
        kwargs = {}
        if network.controller_hidden_size is not None:
            kwargs["controller_hidden_size"] = network.controller_hidden_size
        return AdaptiveMLPNetwork(
            num_features=num_features,
            hidden_sizes=network.hidden_sizes,
            activation=network.activation,
            name=config.name,
            **kwargs,
        )
    kwargs = {}
    if network.architecture != MLPNetwork.kind:
        kwargs["num_context_features"] = features.NUM_CONTEXT_FEATURES
        if network.lstm_hidden_size is not None:
            kwargs["lstm_hidden_size"] = network.lstm_hidden_size
        if network.bank_size is not None:
            kwargs["bank_size"] = network.bank_size
    return ARCHITECTURES[network.architecture](
        num_features=num_features,
        hidden_sizes=network.hidden_sizes,
        activation=network.activation,
        magnitude_scale=network.magnitude_scale,
        max_log_multiplier=network.max_log_multiplier,
        name=config.name,
        **kwargs,
    )


def _with_feature_set(loaded, feature_set, preset_name):
    """`loaded` (a `LoadedPreset`), its MLP made to read `feature_set`.

    A preset that reads more features than the run's starts it with the
    rows of its first layer for the run's features, the others dropped: the
    rule computes what it computed with those features set to zero. The
    reverse (new features) and recurrent presets are refused.
    """
    names = features.feature_names(feature_set)
    if loaded.feature_names == names:
        return loaded
    if loaded.network.kind != MLPNetwork.kind or not set(names) <= set(loaded.feature_names):
        raise ValueError(
            f"`init_preset` {preset_name!r} reads the features "
            f"{list(loaded.feature_names)} and cannot start a network with the "
            f"feature set {feature_set!r}: only an 'mlp' preset whose features "
            f"include all of {list(names)} can."
        )
    rows = [loaded.feature_names.index(n) for n in names]
    source = loaded.network
    network = MLPNetwork(
        num_features=len(names),
        hidden_sizes=source.hidden_sizes,
        activation=source.activation,
        magnitude_scale=source.magnitude_scale,
        max_log_multiplier=source.max_log_multiplier,
        name=source.name,
    )
    weights = [np.asarray(loaded.weights[0])[rows], *loaded.weights[1:]]
    network.set_weights(weights)
    metadata = {**loaded.metadata, "feature_names": list(names)}
    return dataclasses.replace(
        loaded, metadata=metadata, network=network, weights=tuple(weights)
    )


def _families(config, families):
    """The TaskFamily objects a trainer samples from (see `MetaTrainer`)."""
    if families is None:
        return [tasks.get_family(name) for name in config.task_families]
    families = list(families)
    if not families or not all(isinstance(f, tasks.TaskFamily) for f in families):
        raise ValueError(
            "`families` must be a non-empty list of `keras_lopt.meta.tasks.TaskFamily` "
            f"objects. Received: families={families!r}"
        )
    return families


class MetaTrainer:
    """Meta-trains a learned optimizer (any architecture of `layers`).

    Args:
        config: `MetaTrainConfig`.
        output_dir: where checkpoints, TensorBoard logs and the preset go.
        collective: a `distributed.StrategyCollective` to share the work
            among tf.distribute replicas; default: this process alone.
        families: `tasks.TaskFamily` objects to meta-train on instead of
            the built-in families that `config.task_families` names (which
            is then ignored), e.g. a family of your own Keras tasks built
            with `tasks.keras_task`. Their names go into the preset's
            provenance. Resume a run with the same families.
    """

    def __init__(self, config, output_dir, collective=None, families=None):
        self.config = config
        self.collective = collective or distributed.Collective()
        self.output_dir = os.fspath(output_dir)
        self.layer = build_network(config)
        self.shapes = unroll.weight_shapes(self.layer)
        self.families = _families(config, families)
        self._unrolls = {}
        self._writer = None
        theta = self._initial_theta()
        self.theta = theta
        self.adam_m = np.zeros_like(theta)
        self.adam_v = np.zeros_like(theta)
        self.step = 0
        self.wall_time = 0.0
        self.history = {"meta_loss": [], "grad_norm": []}
        self.eval_history = {"step": [], "meta_loss": []}
        self.best_theta = theta.copy()
        self.best_eval = np.inf
        self.initial_eval = None
        self.workers = [None] * config.tasks_per_step

    # -- set-up ---------------------------------------------------------------

    def _initial_theta(self):
        if self.config.init_preset is None:
            keras.utils.set_random_seed(self.config.seed)
            return unroll.flatten_weights(build_network(self.config).get_weights())
        loaded = _with_feature_set(
            presets.load_preset(self.config.init_preset),
            self.config.network.feature_set,
            self.config.init_preset,
        )
        if loaded.network.kind == MLPNetwork.kind and self.layer.kind != MLPNetwork.kind:
            # An LSTM architecture starts from an MLP preset's rule (e.g.
            # Adam): its per-parameter MLP takes the preset's weights, the
            # LSTM a seeded random start that does not change the output.
            keras.utils.set_random_seed(self.config.seed)
            fresh = build_network(self.config)
            try:
                weights = fresh.weights_from_mlp(loaded.network, loaded.weights)
            except ValueError as e:
                raise ValueError(
                    f"`init_preset` {self.config.init_preset!r} cannot start a "
                    f"{self.layer.kind!r} network: {e}"
                ) from None
            return unroll.flatten_weights(weights)
        got = unroll.weight_shapes(loaded.network)
        if (
            got != self.shapes
            or loaded.network.activation != self.layer.activation
            or loaded.network.kind != self.layer.kind
        ):
            raise ValueError(
                f"`init_preset` {self.config.init_preset!r} has a different "
                f"architecture. Expected a {self.layer.kind!r} network with "
                f"weight shapes {self.shapes} and activation="
                f"{self.layer.activation!r}. Received: a "
                f"{loaded.network.kind!r} network with {got} and "
                f"activation={loaded.network.activation!r}"
            )
        return unroll.flatten_weights(loaded.weights)

    def _max_unroll_steps(self):
        """The longest unroll the run asks for: truncations, ES horizons, evaluation."""
        est = self.config.estimator
        return max(est.truncation_length, *(est.es_horizons or [0]), self.config.eval_horizon)

    def _unroll_for(self, task, num_steps, objective):
        # One compiled program per (structure, objective) serves every
        # length (see `unroll.build_unroll`): compile time and memory grow
        # with the number of task structures, not structures x lengths.
        key = (task.structure, objective)
        if key not in self._unrolls:
            self._unrolls[key] = unroll.build_unroll(
                task, self.layer, self._max_unroll_steps(), objective, self.config.inner_learning_rate,
                min_loss_ratio=self.config.min_loss_ratio,
                loss_visible_fraction=self.config.estimator.loss_visible_fraction,
                feature_names=features.feature_names(self.config.network.feature_set),
                parameter_scale_range=self.config.parameter_scale_range,
            )
        return self._unrolls[key].with_steps(num_steps)

    def _new_worker(self, rng):
        family_index = int(rng.integers(len(self.families)))
        task_index, task = self.families[family_index].sample(rng)
        return self._make_worker(family_index, task_index)

    def _make_worker(self, family_index, task_index):
        task = self.families[family_index].task(task_index)
        est = self.config.estimator
        worker = estimators.TaskWorker(
            task,
            self._unroll_for(task, est.truncation_length, self.config.objective),
            est,
            unroll_for=lambda n: self._unroll_for(task, n, self.config.objective),
            init_pool_size=self.config.init_pool_size,
        )
        worker.identity = (family_index, task_index)
        return worker

    # -- training -------------------------------------------------------------

    def _shares(self, count):
        """`{replica id: (device, [indices i of range(count) it computes])}`."""
        replicas = self.collective.num_replicas
        return {
            r: (device, [i for i in range(count) if i % replicas == r])
            for r, device in self.collective.local_replicas()
        }

    def _owned_slots(self):
        """Task slots whose trajectories this process runs."""
        return sorted(i for _, indices in self._shares(self.config.tasks_per_step).values() for i in indices)

    def _sharded(self, count, width, compute):
        """Runs `compute(i) -> [width] array` on this process's share of
        `range(count)` and returns the exact `[count, width]` table of all."""
        rows = {}
        for r, (device, indices) in self._shares(count).items():
            table = np.zeros((count, width), np.float64)
            for i in indices:
                with contextlib.nullcontext() if device is None else tf.device(device):
                    table[i] = compute(i)
            rows[r] = table
        return self.collective.sum(rows)

    def train_step(self):
        """One outer step. Returns `(meta_loss, grad_norm)`."""
        start = time.perf_counter()
        c = self.config

        def estimate(i):
            rng = np.random.default_rng([c.seed, self.step, i])
            worker = self.workers[i]
            if worker is None or c.estimator.kind == "es" or worker.finished:
                worker = self.workers[i] = self._new_worker(rng)
            z = estimators.perturbations(
                c.seed, self.step * c.tasks_per_step + i, c.estimator.num_pairs, self.theta.size
            )
            grad, meta, losses = worker.estimate(self.theta, z, rng)
            self._log_inner(worker, losses)
            return np.concatenate([grad.astype(np.float64), [meta]])

        table = self._sharded(c.tasks_per_step, self.theta.size + 1, estimate)
        grads, metas = table[:, :-1].astype(np.float32), table[:, -1]
        grad = np.mean(grads, axis=0)
        grad_norm = float(np.linalg.norm(grad))
        if not np.isfinite(grad_norm):
            raise FloatingPointError(
                f"Non-finite meta-gradient estimate at outer step {self.step}; "
                "the last checkpoint is intact."
            )
        if grad_norm > c.max_grad_norm:
            grad = grad * (c.max_grad_norm / grad_norm)
        self._adam_update(grad)
        meta_loss = float(np.mean(metas))
        self.history["meta_loss"].append(meta_loss)
        self.history["grad_norm"].append(grad_norm)
        self.step += 1
        self.wall_time += time.perf_counter() - start
        self._log_scalars({"meta_loss": meta_loss, "grad_norm": grad_norm})
        return meta_loss, grad_norm

    def _adam_update(self, grad):
        b1, b2 = _ADAM_BETAS
        t = self.step + 1
        self.adam_m = b1 * self.adam_m + (1 - b1) * grad
        self.adam_v = b2 * self.adam_v + (1 - b2) * grad * grad
        m_hat = self.adam_m / (1 - b1**t)
        v_hat = self.adam_v / (1 - b2**t)
        self.theta = (
            self.theta - self.config.outer_learning_rate * m_hat / (np.sqrt(v_hat) + _ADAM_EPSILON)
        ).astype(np.float32)

    def evaluate(self, theta=None):
        """Mean meta-loss of `theta` on held-out seeds of every family.

        Each family contributes `eval_tasks` runs of `eval_horizon` steps
        (variant `i % len(family)`), each of `eval_members` trajectories
        (seeds from `_EVAL_SEED_BASE + i * eval_members`), scored with the
        run's objective ("mean" for "validation" runs) and unperturbed
        meta-weights.
        """
        theta = self.theta if theta is None else theta
        c = self.config
        objective = "mean" if c.objective == "validation" else c.objective
        runs = [(family, i) for family in self.families for i in range(c.eval_tasks)]
        members = c.eval_members

        def score(k):
            family, i = runs[k]
            task = family.task(i % len(family))
            run = self._unroll_for(task, c.eval_horizon, objective)
            seeds = _EVAL_SEED_BASE + i * members + np.arange(members)
            state = unroll.fresh_state(
                task, seeds, [c.eval_horizon] * members, network=self.layer,
                init_pool_size=c.init_pool_size,
            )
            _, meta, _ = run(np.tile(theta[None, :], (members, 1)), state)
            return [float(np.mean(meta.numpy().astype(np.float64)))]

        return float(np.mean(self._sharded(len(runs), 1, score)))

    def train(self, progress=True):
        """Runs until `config.outer_steps`, checkpointing and evaluating.

        With `progress=False` (background runs) a line is printed at each
        checkpoint instead of the progress bar.
        """
        c = self.config
        chief = self.collective.is_chief
        if chief:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, CONFIG_FILE), "w") as f:
                json.dump(c.to_dict(), f, indent=2)
        progress = progress and chief
        if self.initial_eval is None and c.eval_every:
            self.initial_eval = self.evaluate()
            self._record_eval(self.initial_eval, self.theta)
        bar = keras.utils.Progbar(c.outer_steps, stateful_metrics=["meta_loss", "eval"]) if progress else None
        if bar is not None:
            bar.update(self.step)
        while self.step < c.outer_steps:
            meta_loss, grad_norm = self.train_step()
            values = [("meta_loss", meta_loss), ("grad_norm", grad_norm)]
            if c.eval_every and self.step % c.eval_every == 0:
                score = self.evaluate()
                self._record_eval(score, self.theta)
                values.append(("eval", score))
            if self.step % c.checkpoint_every == 0 or self.step == c.outer_steps:
                self.save_checkpoint()
                if bar is None and chief:
                    print(
                        f"step {self.step}: "
                        + ", ".join(f"{name} {value:.4g}" for name, value in values)
                        + f", {self.wall_time:.1f}s",
                        flush=True,
                    )
            if bar is not None:
                bar.update(self.step, values=values)
        if self._writer is not None:
            self._writer.flush()

    def _record_eval(self, score, theta):
        self.eval_history["step"].append(self.step)
        self.eval_history["meta_loss"].append(score)
        if score < self.best_eval:
            self.best_eval = score
            self.best_theta = theta.copy()
        self._log_scalars({"eval/meta_loss": score})

    # -- logging --------------------------------------------------------------

    def _summary_writer(self):
        if self._writer is None:
            # Only the chief writes TensorBoard logs.
            self._writer = (
                tf.summary.create_file_writer(os.path.join(self.output_dir, "tensorboard"))
                if self.collective.is_chief
                else tf.summary.create_noop_writer()
            )
        return self._writer

    def _log_scalars(self, values):
        with self._summary_writer().as_default(step=self.step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def _log_inner(self, worker, losses):
        family = self.families[worker.identity[0]].name
        curve = np.mean(losses, axis=0)
        with self._summary_writer().as_default(step=self.step):
            tf.summary.scalar(f"inner_loss_first/{family}", float(curve[0]))
            tf.summary.scalar(f"inner_loss_last/{family}", float(curve[-1]))

    # -- checkpoints ----------------------------------------------------------

    @property
    def checkpoint_path(self):
        return os.path.join(self.output_dir, CHECKPOINT_FILE)

    def _worker_arrays(self):
        """This process's in-flight inner trajectories, as named arrays."""
        arrays = {}
        for i in self._owned_slots():
            worker = self.workers[i]
            if worker is None or worker.state is None:
                continue
            arrays[f"worker{i}_identity"] = np.asarray(worker.identity, np.int64)
            if worker.accumulated_z is not None:
                arrays[f"worker{i}_accumulated_z"] = worker.accumulated_z
            for key, value in worker.state.numpy().items():
                arrays[f"worker{i}_{key}"] = value
        return arrays

    def save_checkpoint(self):
        """Writes `checkpoint.npz` atomically (temporary file, then rename).

        Every worker must call it: the others send their trajectories to
        the chief, which writes the one file.
        """
        trajectories = self._worker_arrays()
        if self.collective.num_replicas > 1:
            parts = self.collective.gather_to_chief(distributed.pack_arrays(trajectories))
            if not self.collective.is_chief:
                return
            trajectories = {}
            for part in parts:
                if part:
                    trajectories.update(distributed.unpack_arrays(part))
        arrays = {
            "theta": self.theta,
            "adam_m": self.adam_m,
            "adam_v": self.adam_v,
            "step": np.int64(self.step),
            "wall_time": np.float64(self.wall_time),
            "best_theta": self.best_theta,
            "best_eval": np.float64(self.best_eval),
            "initial_eval": np.float64(np.nan if self.initial_eval is None else self.initial_eval),
            "meta_loss": np.asarray(self.history["meta_loss"], np.float64),
            "grad_norm": np.asarray(self.history["grad_norm"], np.float64),
            "eval_step": np.asarray(self.eval_history["step"], np.int64),
            "eval_meta_loss": np.asarray(self.eval_history["meta_loss"], np.float64),
            "config_json": np.asarray(json.dumps(self.config.to_dict())),
            **trajectories,
        }
        os.makedirs(self.output_dir, exist_ok=True)
        tmp = self.checkpoint_path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint_path)

    def _read_checkpoint(self):
        """The checkpoint's arrays, read by the chief and sent to every worker."""
        payload = None
        if self.collective.is_chief and os.path.isfile(self.checkpoint_path):
            with open(self.checkpoint_path, "rb") as f:
                payload = f.read()
        if self.collective.num_replicas > 1:
            payload = self.collective.broadcast_from_chief(payload)
        return None if payload is None else distributed.unpack_arrays(payload)

    def restore(self):
        """Loads the latest checkpoint. Returns False if there is none."""
        data = self._read_checkpoint()
        if data is None:
            return False
        saved = json.loads(str(data["config_json"]))
        differences = self.config.run_differences(saved)
        if differences:
            raise ValueError(
                f"The checkpoint in {self.output_dir!r} was written with a "
                f"different config (fields {differences} differ); resume with the "
                "same config (only outer_steps may be raised) or use a new output "
                f"directory. Checkpoint config: {saved}"
            )
        self.theta = data["theta"]
        self.adam_m = data["adam_m"]
        self.adam_v = data["adam_v"]
        self.step = int(data["step"])
        self.wall_time = float(data["wall_time"])
        self.best_theta = data["best_theta"]
        self.best_eval = float(data["best_eval"])
        initial = float(data["initial_eval"])
        self.initial_eval = None if np.isnan(initial) else initial
        self.history = {"meta_loss": list(data["meta_loss"]), "grad_norm": list(data["grad_norm"])}
        self.eval_history = {
            "step": [int(s) for s in data["eval_step"]],
            "meta_loss": list(data["eval_meta_loss"]),
        }
        self.workers = [None] * self.config.tasks_per_step
        for i in self._owned_slots():
            if f"worker{i}_identity" not in data:
                continue
            family_index, task_index = (int(v) for v in data[f"worker{i}_identity"])
            worker = self._make_worker(family_index, task_index)
            worker.restart(np.random.default_rng(0))  # template; replaced below
            prefix = f"worker{i}_"
            worker.state = worker.state.replace_from_numpy(
                {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix + "inner_")}
            )
            key = f"worker{i}_accumulated_z"
            worker.accumulated_z = data[key] if key in data else None
            self.workers[i] = worker
        return True

    # -- export ---------------------------------------------------------------

    def _best_eval_step(self):
        scores = self.eval_history["meta_loss"]
        if not scores:
            return None
        return int(self.eval_history["step"][int(np.argmin(scores))])

    def export(self, path=None, use_best=True, name=None):
        """Exports the best (by held-out evaluation) or the final meta-weights.

        `name` is the preset's name (default: the config's), e.g. a new
        version of a run that was extended. Returns the `LoadedPreset`; None
        on workers other than the chief, which write nothing.
        """
        if not self.collective.is_chief:
            return None
        c = self.config
        theta = self.best_theta if use_best and np.isfinite(self.best_eval) else self.theta
        self.layer.set_weights([np.asarray(w) for w in unroll.unflatten_weights(theta, self.shapes)])
        provenance = {
            "method": "meta-trained",
            "meta_trained": True,
            "task_families": [family.name for family in self.families],
            "estimator": c.to_dict()["estimator"],
            "objective": c.objective,
            "outer_steps": self.step,
            "seed": c.seed,
            "init_preset": c.init_preset,
            "wall_time_s": round(self.wall_time, 1),
            "replicas": self.collective.num_replicas,
            "final_meta_loss": self.history["meta_loss"][-1] if self.history["meta_loss"] else None,
            "initial_eval_meta_loss": self.initial_eval,
            "best_eval_meta_loss": self.best_eval if np.isfinite(self.best_eval) else None,
            "best_eval_step": self._best_eval_step(),
            "exported_weights": "best_eval" if theta is self.best_theta else "final",
            "config": c.to_dict(),
        }
        return savedmodel.export(
            self.layer,
            path or os.path.join(self.output_dir, "preset"),
            savedmodel.PresetInfo(
                name=c.name if name is None else name,
                learning_rate=c.inner_learning_rate,
                provenance=provenance,
                description=(
                    f"Meta-trained with {c.estimator.kind} on "
                    f"{', '.join(family.name for family in self.families)}."
                ),
                feature_set=c.network.feature_set,
            ),
        )
