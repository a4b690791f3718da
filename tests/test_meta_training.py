import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import keras_lopt
from keras_lopt import presets
from keras_lopt.meta import families, unroll
from keras_lopt.meta.config import MetaTrainConfig
from keras_lopt.meta.trainer import MetaTrainer

from conftest import checkpoint_step, unroll_and_optimizer_losses

QUADRATIC_CONFIG = {
    "name": "quadratic_test_v1",
    "task_families": ["quadratic"],
    "outer_steps": 30,
    "eval_every": 10,
    "checkpoint_every": 5,
    "estimator": {
        "kind": "pes",
        "num_pairs": 8,
        "sigma": 0.01,
        "truncation_length": 10,
        "min_horizon": 50,
        "max_horizon": 100,
    },
    "inner_learning_rate": 0.01,
    "outer_learning_rate": 0.01,
    "eval_horizon": 100,
}


def test_unroll_runs_the_same_rule_as_the_keras_optimizer(random_preset):
    """Inner training in meta/ and LearnedOptimizer give the same trajectory."""
    got, expected = unroll_and_optimizer_losses(random_preset, steps=12)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_families_sample_deterministically():
    family = families.get_family("mlp_digits")
    picks = [family.sample(np.random.default_rng(5))[0] for _ in range(2)]
    assert picks[0] == picks[1]
    task = family.task(0)
    a, b, c = task.init_params(1), task.init_params(1), task.init_params(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))
    with pytest.raises(ValueError, match="Unknown task family 'imagenet'"):
        families.get_family("imagenet")


@pytest.mark.parametrize("objective", ["final", "tail", "validation", "validation_tail", "joint_tail"])
def test_objectives_on_a_keras_task(objective):
    task = families.get_family("mlp_regression").task(0)
    layer = presets.load_preset("adam_equivalent_v1").network
    run = unroll.Unroll(task, layer, 5, objective, 1e-3)
    state = unroll.fresh_state(task, [0, 1], [100, 100])
    theta = unroll.flatten_weights(layer.get_weights())
    new_state, meta, losses = run(np.stack([theta, theta]), state)
    assert losses.shape == (2, 5)
    assert np.all(np.isfinite(meta.numpy()))
    assert np.all(new_state.step.numpy() == 5)


def test_validation_tail_scores_validation_batches():
    task = families.get_family("mlp_regression").task(0)
    layer = presets.load_preset("adam_equivalent_v1").network
    theta = unroll.flatten_weights(layer.get_weights())
    metas = {}
    for objective in ("tail", "validation_tail", "joint_tail"):
        state = unroll.fresh_state(task, [0, 1], [100, 100])
        _, meta, _ = unroll.Unroll(task, layer, 20, objective, 1e-3)(np.stack([theta, theta]), state)
        metas[objective] = meta.numpy()
    # Same trajectories, other batches scored: the meta-losses differ.
    assert np.all(np.isfinite(metas["validation_tail"]))
    assert not np.allclose(metas["tail"], metas["validation_tail"], rtol=1e-4)
    # "joint_tail" is the mean of the two (the tail is linear in the values).
    np.testing.assert_allclose(metas["joint_tail"], 0.5 * (metas["tail"] + metas["validation_tail"]), rtol=1e-5)


def test_short_meta_training_improves_held_out_meta_loss(tmp_path):
    config = MetaTrainConfig.from_dict(QUADRATIC_CONFIG)
    trainer = MetaTrainer(config, tmp_path / "run")
    trainer.train(progress=False)
    # Measured: initial -0.51, best about -3.2 (log of loss relative to the
    # initial loss, averaged over the held-out runs).
    assert trainer.best_eval < trainer.initial_eval - 1.0
    preset = trainer.export()
    assert preset.metadata["provenance"]["outer_steps"] == 30
    assert preset.metadata["provenance"]["task_families"] == ["quadratic"]
    assert keras_lopt.load_learned_optimizer(preset.path).preset == preset.path


def _cli(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", "keras_lopt.meta", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_meta_weights(tmp_path):
    config = dict(QUADRATIC_CONFIG, outer_steps=24, checkpoint_every=2, eval_every=8)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))

    straight = _cli(["meta-train", "--config", str(config_path), "--output", str(tmp_path / "a"), "--no-progress"])
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    killed = _cli(["meta-train", "--config", str(config_path), "--output", str(tmp_path / "b"), "--no-progress"])
    checkpoint = tmp_path / "b" / "checkpoint.npz"
    deadline = time.time() + 300
    while checkpoint_step(checkpoint) < 6 and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    step_at_kill = checkpoint_step(checkpoint)
    assert 6 <= step_at_kill < 24

    resumed = _cli(
        ["meta-train", "--config", str(config_path), "--output", str(tmp_path / "b"), "--resume", "--no-progress"]
    )
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"at outer step {step_at_kill}" in out

    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(checkpoint) as b:
        assert int(a["step"]) == int(b["step"]) == 24
        for key in ("theta", "outer_optimizer/m", "outer_optimizer/v", "best_theta", "meta_loss"):
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task_families": ["imagenet"]}, "Unknown task family 'imagenet'"),
        ({"outer_steps": -5}, "`outer_steps` must be a positive integer. Received: outer_steps=-5"),
        ({"estimator": {"kind": "sgd"}}, "`kind` must be one of"),
        ({"learning_rate": 1}, "Unknown key"),
    ],
)
def test_cli_rejects_bad_config_and_writes_nothing(tmp_path, change, message):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(dict(QUADRATIC_CONFIG, **change)))
    output = tmp_path / "out"
    proc = _cli(["meta-train", "--config", str(config_path), "--output", str(output)])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    # TensorFlow's own start-up log lines may precede ours; ours is one line.
    ours = [line for line in err.splitlines() if line.startswith("keras-lopt")]
    assert len(ours) == 1 and message in ours[0], err
    assert "Traceback" not in err
    assert not output.exists()


def test_cli_missing_config_file(tmp_path):
    proc = _cli(["meta-train", "--config", str(tmp_path / "nope.json")])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "Config file not found" in err


def test_cli_refuses_to_overwrite_a_run_without_resume(tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(dict(QUADRATIC_CONFIG, outer_steps=2, eval_every=0)))
    first = _cli(["meta-train", "--config", str(config_path), "--output", str(tmp_path / "run"), "--no-progress"])
    assert first.wait(timeout=120) == 0
    again = _cli(["meta-train", "--config", str(config_path), "--output", str(tmp_path / "run")])
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2
    assert "pass --resume" in err


def test_a_finished_run_can_be_extended_but_not_changed(tmp_path):
    config = dict(QUADRATIC_CONFIG, outer_steps=2, eval_every=0)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    run = tmp_path / "run"
    first = _cli(["meta-train", "--config", str(config_path), "--output", str(run), "--no-progress"])
    assert first.wait(timeout=120) == 0
    assert checkpoint_step(run / "checkpoint.npz") == 2

    config_path.write_text(json.dumps(dict(config, outer_steps=4)))
    longer = _cli(["meta-train", "--config", str(config_path), "--output", str(run), "--resume", "--no-progress"])
    out, err = longer.communicate(timeout=120)
    assert longer.returncode == 0, err
    assert "at outer step 2" in out
    assert checkpoint_step(run / "checkpoint.npz") == 4

    config_path.write_text(json.dumps(dict(config, outer_steps=6, seed=config.get("seed", 0) + 1)))
    changed = _cli(["meta-train", "--config", str(config_path), "--output", str(run), "--resume", "--no-progress"])
    _, err = changed.communicate(timeout=120)
    assert changed.returncode == 2
    assert "fields ['seed'] differ" in err
    assert checkpoint_step(run / "checkpoint.npz") == 4


def test_config_accepts_every_family_of_the_task_registry():
    names = tuple(families.family_names())
    assert MetaTrainConfig(task_families=names).task_families == names


def test_tail_objective_is_the_mean_of_the_last_tenth():
    task = families.get_family("quadratic").task(0)
    layer = presets.load_preset("adam_equivalent_v1").network
    theta = unroll.flatten_weights(layer.get_weights())
    runs = {objective: unroll.Unroll(task, layer, 20, objective, 1e-2) for objective in ("tail", "mean")}
    results = {}
    for objective, run in runs.items():
        state = unroll.fresh_state(task, [3], [20])
        _, meta, losses = run(theta[None, :], state)
        results[objective] = (float(meta[0]), losses.numpy()[0])
    meta, losses = results["tail"]
    np.testing.assert_array_equal(losses, results["mean"][1])
    expected = np.mean(np.log(np.clip(losses[-2:] / losses[0], 1e-12, 100.0)))
    np.testing.assert_allclose(meta, expected, rtol=1e-5)
    assert meta < results["mean"][0]  # the loss falls, so the tail beats the mean


def test_objective_scores_only_the_steps_run():
    values = np.random.default_rng(0).normal(size=12).astype(np.float32)
    expected = {
        "mean": lambda v, n: v[:n].mean(),
        "validation": lambda v, n: v[:n].mean(),
        "final": lambda v, n: v[n - 1],
        "tail": lambda v, n: v[n - max(1, n // 10) : n].mean(),
        "validation_tail": lambda v, n: v[n - max(1, n // 10) : n].mean(),
        "joint_tail": lambda v, n: v[n - max(1, n // 10) : n].mean(),
    }
    for objective, formula in expected.items():
        for n in (1, 5, 10, 11, 12):
            got = float(unroll._objective(objective, tf.constant(values), tf.constant(n)))
            np.testing.assert_allclose(got, formula(values, n), rtol=1e-6, atol=1e-6, err_msg=f"{objective} {n}")


def test_one_compiled_unroll_serves_every_length():
    # "validation" fills both loss buffers; `_objective` is checked above.
    objective = "validation"
    task = families.get_family("quadratic").task(0)
    layer = presets.load_preset("adam_equivalent_v1").network
    theta = unroll.flatten_weights(layer.get_weights())
    thetas = np.stack([theta, theta * 1.01])
    longest = unroll.Unroll(task, layer, 12, objective, 1e-2)
    for n in (1, 7, 12):
        exact = longest if n == 12 else unroll.Unroll(task, layer, n, objective, 1e-2)
        state = unroll.fresh_state(task, [1, 2], [n, n])
        got_state, got_meta, got_losses = longest(thetas, state, num_steps=n)
        want_state, want_meta, want_losses = exact(thetas, state)
        assert got_losses.shape == (2, n)
        np.testing.assert_array_equal(got_losses, want_losses)
        np.testing.assert_allclose(got_meta, want_meta, rtol=1e-6)
        for a, b in zip(tf.nest.flatten(got_state.as_tuple()), tf.nest.flatten(want_state.as_tuple())):
            np.testing.assert_array_equal(a, b)
    # 5 steps and then 7 more continue the trajectory exactly as 12 at once.
    state = unroll.fresh_state(task, [1, 2], [12, 12])
    first, _, losses_a = longest(thetas, state, num_steps=5)
    second, _, losses_b = longest(thetas, first, num_steps=7)
    whole, _, losses = longest(thetas, state)
    np.testing.assert_array_equal(np.concatenate([losses_a, losses_b], axis=1), losses)
    np.testing.assert_array_equal(second.params[0], whole.params[0])
    assert longest.tracing_count == 1
    with pytest.raises(ValueError, match="at most 12 steps. Received: num_steps=13"):
        longest(thetas, state, num_steps=13)


def test_es_draws_unroll_lengths_from_es_horizons():
    from keras_lopt.meta import estimators
    from keras_lopt.meta.config import EstimatorConfig

    task = families.get_family("quadratic").task(0)
    layer = presets.load_preset("adam_equivalent_v1").network
    theta = unroll.flatten_weights(layer.get_weights())
    config = EstimatorConfig(kind="es", num_pairs=2, truncation_length=4, es_horizons=(4, 8))
    estimator = estimators.make_estimator(task, unroll.Unroll(task, layer, 8, "mean", 1e-2), config)
    assert isinstance(estimator, estimators.FullES)
    rng = np.random.default_rng(0)
    lengths = set()
    for step in range(8):
        z = estimators.perturbations(0, step, 2, theta.size)
        grad, _, losses = estimator.estimate(theta, z, rng)
        assert losses.shape == (4, estimator.horizon)
        assert np.all(estimator.state.step.numpy() == estimator.horizon)
        assert np.all(np.isfinite(grad))
        lengths.add(estimator.horizon)
    assert lengths == {4, 8}
    with pytest.raises(ValueError, match="runs at most 4 steps, but this estimator runs up to 8"):
        estimators.make_estimator(task, unroll.Unroll(task, layer, 4, "mean", 1e-2), config)
    with pytest.raises(ValueError, match="kind='es' only"):
        EstimatorConfig(kind="pes", es_horizons=(4,))
    with pytest.raises(ValueError, match=r"Received: es_horizons\[i\]=0"):
        EstimatorConfig(kind="es", es_horizons=(4, 0))


def test_frozen_weights_keep_their_values_and_the_others_train(tmp_path):
    config = MetaTrainConfig.from_dict(
        {**QUADRATIC_CONFIG, "outer_steps": 3, "eval_every": 0, "frozen_weights": ["kernel_0", "bias_0"]}
    )
    trainer = MetaTrainer(config, tmp_path / "run")
    start = trainer.theta.copy()
    for _ in range(3):
        trainer.train_step()
    frozen = trainer.trainable == 0.0
    first_layer = sum(int(np.prod(s)) for s in trainer.shapes[:2])
    assert frozen.sum() == first_layer and frozen[:first_layer].all()
    np.testing.assert_array_equal(trainer.theta[frozen], start[frozen])
    assert np.all(trainer.outer_optimizer.state_arrays()["m"][frozen] == 0.0)
    assert not np.allclose(trainer.theta[~frozen], start[~frozen])


def test_frozen_weights_must_name_weights_of_the_network(tmp_path):
    config = MetaTrainConfig.from_dict({**QUADRATIC_CONFIG, "frozen_weights": ["controller_kernel_0"]})
    with pytest.raises(ValueError, match=r"does not have: \['controller_kernel_0'\]. Its weights: \['kernel_0'"):
        MetaTrainer(config, tmp_path / "run")
    with pytest.raises(ValueError, match="names a weight twice"):
        MetaTrainConfig(frozen_weights=("kernel_0", "kernel_0"))
