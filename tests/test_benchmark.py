"""The evaluation protocol: suites, specs, harness, report and `keras-lopt benchmark`."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lopt_cli as cli
from keras_lopt.evaluation import harness, report, specs, suites


def test_specs_have_one_canonical_name():
    from keras_lopt import presets

    default = presets.DEFAULT_PRESET
    assert specs.expand(["learned", "learned+horizon", "adam", "adam@1e-3", "adam_tuned"]) == [
        f"learned:{default}",
        f"learned:{default}+horizon",
        "adam@0.001",
        "adam@0.0001",
        "adam@0.0003",
        "adam@0.003",
        "adam@0.01",
        "adam@0.03",
        "adam@0.1",
    ]
    assert specs.canonical("learned:./saved_models/../saved_models/mlp_es_v4") == "learned:saved_models/mlp_es_v4"
    assert specs.canonical("learned:mlp_es_v4+horizon") == "learned:mlp_es_v4+horizon"
    assert specs.expand(["classic"])[:2] == ["sgd", "sgdm"] and "adam@0.001" in specs.expand(["classic"])
    assert specs.label("adam@0.001") == "Adam(1e-3)" and specs.label("adam@0.03") == "Adam(3e-2)"
    assert type(specs.make_optimizer("rmsprop")).__name__ == "RMSprop"
    assert type(specs.make_optimizer("learned:mlp_es_v4+horizon")).__name__ == "LearnedOptimizer"
    assert [type(c).__name__ for c in specs.make_callbacks(f"learned:{default}+horizon")] == ["TrainingHorizon"]
    assert specs.make_callbacks(f"learned:{default}") == []
    optimizer = specs.make_optimizer({"class_name": "AdamW", "config": {"learning_rate": 3e-3, "beta_1": 0.8}})
    assert type(optimizer).__name__ == "AdamW" and optimizer.beta_1 == 0.8


def _rate(optimizer):
    return float(optimizer.learning_rate.numpy())


def test_every_spec_takes_a_learning_rate():
    """One grammar: `@LR` on learned specs and Keras names too (as `keras-lopt
    plot trajectories` uses them)."""
    assert specs.canonical("learned:mlp_es_v4@1e-2+horizon") == "learned:mlp_es_v4@0.01+horizon"
    assert specs.parse("learned:mlp_es_v4@1e-2+horizon") == specs.Spec("learned", "mlp_es_v4", 0.01, True)
    assert specs.parse("sgd@0.05") == specs.Spec("sgd", None, 0.05, False)
    assert specs.canonical("sgd") == "sgd" and specs.canonical("rmsprop@3e-4") == "rmsprop@0.0003"
    learned = specs.make_optimizer("learned:mlp_es_v4@0.02")
    assert type(learned).__name__ == "LearnedOptimizer" and _rate(learned) == pytest.approx(0.02)
    sgd = specs.make_optimizer("sgd@0.05")
    assert type(sgd).__name__ == "SGD" and _rate(sgd) == pytest.approx(0.05)
    rmsprop = specs.make_optimizer("rmsprop@3e-4")
    assert type(rmsprop).__name__ == "RMSprop" and _rate(rmsprop) == pytest.approx(3e-4)
    sgdm = specs.make_optimizer("sgdm@0.1")
    assert sgdm.momentum == 0.9 and _rate(sgdm) == pytest.approx(0.1)
    assert specs.adam_rate("adam") == 1e-3 and specs.adam_rate("adam@3e-2") == 3e-2 and specs.adam_rate("sgd") is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ("rmsprob", "Unknown optimizer spec 'rmsprob'"),
        ("adam@-1", "Unknown optimizer spec 'adam@-1'"),
        ("adam@inf", "Unknown optimizer spec 'adam@inf'"),
        ("sgd:mlp_es_v4", "Unknown optimizer spec 'sgd:mlp_es_v4'"),
        ("learned:@0.1", "Unknown optimizer spec 'learned:@0.1'"),
        ("adam_tuned@0.1", "Unknown optimizer spec 'adam_tuned@0.1'"),
        ("adam+horizon", "`+horizon` applies to learned optimizers only. Received: 'adam+horizon'"),
        ("learned:no_such_preset", "'no_such_preset' is neither a shipped preset nor a SavedModel directory"),
    ],
)
def test_bad_specs_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        specs.expand([spec])


def test_suites_are_separate_and_cover_the_protocol():
    selection, test = suites.task_names("selection"), suites.task_names("test")
    assert len(selection) == 16 and 10 <= len(test) <= 13
    assert not set(selection) & set(test)
    for suite, lengths in ((test, [1000, 5000, 10000]), (selection, [2000, 6000])):
        ladders = {}
        for name in suite:
            task = suites.get_task(name)
            if task.ladder:
                ladders.setdefault(task.ladder, []).append(task)
        assert [t.steps for t in ladders["length"]] == lengths
        assert len(ladders["width"]) == 3 and len({t.steps for t in ladders["width"]}) == 1
    assert all(2000 <= suites.get_task(n).steps <= 3000 for n in test if suites.get_task(n).ladder != "length")
    assert suites.default_seeds(test) == (0, 1, 2) and suites.default_seeds(selection) == (0, 1)
    assert set(suites.QUICK_TASKS) <= set(test)
    with pytest.raises(ValueError, match="Unknown evaluation task 'imagenet'"):
        suites.get_task("imagenet")
    with pytest.raises(ValueError, match="Unknown suite 'train'"):
        suites.task_names("train")


def test_width_ladder_parameter_counts():
    counts = [suites.get_task(f"byte_mlp_lm_w{w}").build_model().count_params() for w in (64, 256, 1024)]
    # Embedding 256x16, Dense(256 -> w), Dense(w -> w), Dense(w -> 256), with biases.
    assert counts == [256 * 16 + 257 * w + (w + 1) * w + (w + 1) * 256 for w in (64, 256, 1024)]
    assert counts[0] < 50_000 and counts[-1] >= 1_000_000


@pytest.mark.parametrize("name", suites.task_names())
def test_every_task_builds_and_has_a_finite_gradient(name):
    import tensorflow as tf

    task = suites.get_task(name)
    (x, y), (vx, vy) = task.load_data()
    assert len(x) == len(y) >= 100 and len(vx) == len(vy) >= 30, name
    model = task.build_model()
    with tf.GradientTape() as tape:
        loss = task.loss(y[: task.batch_size], model(x[: task.batch_size], training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert math.isfinite(float(loss)) and float(loss) > 0
    assert all(g is not None and np.all(np.isfinite(tf.convert_to_tensor(g))) for g in grads)
    assert float(task.loss(vy[:8], model(vx[:8], training=False))) > 0


def _record(task, spec, seed, train, valid, steps=100):
    return dict(
        task=task,
        optimizer=spec,
        seed=seed,
        steps=steps,
        batch_size=8,
        final_train_loss=train,
        final_valid_loss=valid,
        diverged=not (math.isfinite(train) and math.isfinite(valid)),
        seconds=1.0,
        curve_steps=[50, 100],
        curve=[2 * train, train],
    )


def test_tuned_adam_is_chosen_per_metric_and_the_counts_follow():
    """Task "t": the best training loss is Adam(1e-1)'s, the best validation
    loss Adam(1e-4)'s, so the candidate is compared with each on its metric."""
    grid = {
        "adam@0.0001": (1.0, 0.5),
        "adam@0.0003": (0.95, 0.6),
        "adam@0.001": (0.8, 0.7),
        "adam@0.003": (0.6, 0.9),
        "adam@0.01": (0.4, 1.2),
        "adam@0.03": (0.2, 1.5),
        "adam@0.1": (0.1, 2.0),
    }
    records = []
    for seed in (0, 1):
        for spec, (train, valid) in grid.items():
            records.append(_record("t", spec, seed, train * (1 + seed / 10), valid * (1 + seed / 10)))
    # Seed 0 beats Adam(1e-3) on both metrics and train-tuned Adam (0.1) on
    # training loss, not valid-tuned Adam (0.5) on validation; seed 1 beats
    # Adam(1e-3) and valid-tuned Adam (0.77, 0.55) on validation loss only.
    records.append(_record("t", "cand", 0, 0.05, 0.6))
    records.append(_record("t", "cand", 1, 2.64, 0.54))
    # Seed 2 has Adam(1e-3) only: compared with it, not with a tuned Adam.
    records.append(_record("t", "adam@0.001", 2, 0.9, 0.9))
    records.append(_record("t", "cand", 2, 0.5, 0.5))
    # On "byte_mlp_lm_w64" (a width-ladder rung, no grid) the candidate diverges.
    records.append(_record("byte_mlp_lm_w64", "cand", 0, math.nan, math.nan))
    records.append(_record("byte_mlp_lm_w64", "adam@0.001", 0, 3.0, 3.1))
    summary = report.build(records, ["cand"])
    assert summary["tasks"]["t"]["tuned"] == {"train": "adam@0.1", "valid": "adam@0.0001"}
    assert summary["tasks"]["t"]["tuned_seeds"] == [0, 1]
    assert summary["tasks"]["byte_mlp_lm_w64"]["tuned"] == {}
    counts = summary["counts"]["cand"]
    assert counts["train_vs_adam"] == {"wins": 2, "runs": 4}
    assert counts["train_vs_tuned"] == {"wins": 1, "runs": 2}
    assert counts["valid_vs_adam"] == {"wins": 3, "runs": 4}
    assert counts["valid_vs_tuned"] == {"wins": 1, "runs": 2}
    assert counts["nonfinite"] == 1 and counts["runs"] == 4
    assert counts["ladders"] == {"byte_mlp_lm_w64": math.inf}
    # A tie within TIE_TOLERANCE is not a win.
    same = _record("t", "same", 0, 0.8 * (1 - report.TIE_TOLERANCE / 2), 0.7)
    tie = report.build([*records[:14], same], ["same"])
    assert tie["counts"]["same"]["train_vs_adam"] == {"wins": 0, "runs": 1}

    table = report.markdown(summary)
    assert "| **target** | >= 95% | >= 50% | >= 80% | (none) | 0 | <= 2 |" in table
    assert (
        "| cand | 2/4 (50%) **missed** | 1/2 (50%) ok | 3/4 (75%) **missed** | 1/2 (50%) "
        "| 1/4 **missed** | inf (byte_mlp_lm_w64) **> 2x** |"
    ) in table
    assert "| t | 100 | 0.86 | 0.105 (0.1) | 1.063 |" in table  # training losses, means over seeds
    assert "| t | 100 | 0.79 | 0.525 (0.0001) | 0.5467 |" in table  # validation losses
    assert "Final training loss" in table and "Final validation loss" in table


def test_ladder_ratio_is_flagged_above_two():
    records = [_record("resmlp_ln_mnist1d_1k", "adam@0.001", s, 1.0, 1.0, 1000) for s in (0, 1)]
    records += [
        _record("resmlp_ln_mnist1d_1k", "cand", 0, 1.5, 1.0, 1000),
        _record("resmlp_ln_mnist1d_1k", "cand", 1, 2.5, 1.0, 1000),
    ]
    summary = report.build(records, ["cand"])
    assert summary["counts"]["cand"]["ladders"] == {"resmlp_ln_mnist1d_1k": 2.5}
    assert "| resmlp_ln_mnist1d_1k (1000 steps) | 2.5 **> 2x** |" in report.markdown(summary)


def test_candidates_are_compared_with_the_default_preset_task_seed_by_task_seed():
    default = specs.canonical("learned")
    records = [_record("t", "adam@0.001", s, 1.0, 1.0) for s in (0, 1)]
    records += [_record("t", default, 0, 0.01, 1.0), _record("t", default, 1, 0.2, 1.0)]
    # Both beat Adam(1e-3) on both seeds; the candidate is 3x the default on seed 0.
    records += [_record("t", "cand", 0, 0.03, 1.0), _record("t", "cand", 1, 0.1, 1.0)]
    summary = report.build(records, ["cand", default])
    assert summary["default"] == default
    assert summary["counts"]["cand"]["train_vs_adam"] == {"wins": 2, "runs": 2}
    ratio, task, seed = summary["counts"]["cand"]["vs_default"]
    assert (round(ratio, 6), task, seed) == (3.0, "t", 0)
    assert summary["counts"][default]["vs_default"] is None
    table = report.markdown(summary)
    assert "| cand | 3 (t, seed 0) **> 2x** |" in table
    assert f"| {default} | " not in table.split("Against the default")[1].split("Final training loss")[0]


def test_run_benchmark_trains_with_fit_and_resumes(tmp_path):
    path = str(tmp_path / "results.jsonl")
    logged = []
    results = harness.run_benchmark(["mlp_iris"], ["adam@0.001"], [0], 30, output_path=path, log=logged.append)
    (adam,) = results
    assert adam["curve_steps"] == list(range(1, 31)) and len(adam["curve"]) == 30
    assert adam["final_train_loss"] < adam["curve"][0] and not adam["diverged"]
    assert adam["backend"] == keras.backend.backend()
    again = harness.run_benchmark(["mlp_iris"], ["adam@0.001"], [0], 30, output_path=path, log=logged.append)
    assert len(logged) == 1 and again == results  # nothing re-ran
    assert harness.read_results(path) == results


def test_a_results_file_holds_one_backends_runs(tmp_path):
    path = tmp_path / "results.jsonl"
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    old = _record("mlp_iris", "adam@0.001", 0, 0.5, 0.6)  # written before records had a backend
    path.write_text(json.dumps(old) + "\n" + json.dumps(dict(old, seed=1, backend=other)) + "\n")
    assert [r["backend"] for r in harness.read_results(str(path))] == ["tensorflow", other]
    with pytest.raises(ValueError, match=f"runs of the {other} backend.*another output directory"):
        harness.run_benchmark(["mlp_iris"], ["adam@0.001"], [2], 30, output_path=str(path), log=print)
    assert len(path.read_text().splitlines()) == 2  # nothing ran, nothing was written
    summary = report.build(harness.read_results(str(path)), ["adam@0.001"])
    assert summary["backends"] == sorted({"tensorflow", other})
    assert report.markdown(summary).startswith(f"Keras backend: {', '.join(summary['backends'])}. Seeds 0, 1;")


@pytest.mark.slow
def test_same_start_and_batches_for_every_optimizer_and_mode(tmp_path):
    # adam_equivalent_v1 reproduces Adam(1e-3): from the same initial weights
    # and batches, in either mode, it ends where Adam ends.
    runs = specs.expand(["adam", "learned:adam_equivalent_v1", "learned:adam_equivalent_v1+horizon"])
    adam, learned, horizon = harness.run_benchmark(["mlp_iris"], runs, [1], 30, log=lambda line: None)
    for other in (learned, horizon):
        assert other["final_train_loss"] == pytest.approx(adam["final_train_loss"], rel=1e-4)
        assert other["final_valid_loss"] == pytest.approx(adam["final_valid_loss"], rel=1e-4)
        np.testing.assert_allclose(other["curve"], adam["curve"], rtol=1e-3)


def test_report_only_writes_the_report_of_what_is_there(tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    learned = specs.canonical("learned")
    with open(out / "results.jsonl", "w") as f:
        for i, spec in enumerate(specs.expand(["adam_tuned"]) + [learned]):
            f.write(json.dumps(_record("mlp_iris", spec, 0, 0.1 * (i + 1), 0.2 * (i + 1), steps=30)) + "\n")
    argv = ["benchmark", "--tasks", "mlp_iris", "--seeds", "0", "--steps", "30", "--report-only", "--output", str(out)]
    assert cli.main(argv) == 0
    table = (out / "table.md").read_text()
    assert table.startswith("**Incomplete: 1 of the 9 planned runs are missing**")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing_runs"] == [["mlp_iris", learned + "+horizon", 0, 30]]
    # The learned run (training loss 0.8) loses to every Adam rate (0.1 ... 0.7).
    assert summary["counts"][learned]["train_vs_adam"] == {"wins": 0, "runs": 1}
    assert summary["tasks"]["mlp_iris"]["tuned"] == {"train": "adam@0.0001", "valid": "adam@0.0001"}
    assert (out / "curves.png").stat().st_size > 3_000 and table in capsys.readouterr().out


def test_curve_windows_divide_the_run():
    assert harness.curve_windows(2000) == 100 and harness.curve_windows(10000) == 100
    assert harness.curve_windows(30) == 30 and harness.curve_windows(250) == 50
    order = harness.batch_order(10, 4, 5, seed=3)
    assert len(order) == 20 and sorted(order[:10]) == list(range(10))
    np.testing.assert_array_equal(order, harness.batch_order(10, 4, 5, seed=3))


def test_no_suite_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["benchmark", "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert f"Tasks ({len(suites.task_names('test'))}): byte_mlp_lm_w64" in captured.out
    assert "Seeds: 0, 1, 2" in captured.out and "hours on a 2-core CPU" in captured.out
    assert "adam@0.1" in captured.out and "+horizon" in captured.out
    assert "pass `--suite test`" in captured.err and "`--yes`" in captured.err
    assert not out.exists()


_OTHER_BACKEND = "jax" if keras.backend.backend() != "jax" else "tensorflow"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--suite", "test", "--tasks", "mlp_iris"], "Pass `--suite` or `--tasks`, not both."),
        (["--quick", "--suite", "test"], "`--quick` runs its own tasks"),
        (["--tasks", "imagenet"], "Unknown evaluation task 'imagenet'"),
        (["--tasks", "mlp_iris", "--seeds", "0,x"], "`--seeds` must be comma-separated integers. Received: '0,x'"),
        (["--tasks", "mlp_iris", "--steps", "0"], "`--steps` must be a positive integer. Received: 0"),
        (["--tasks", "mlp_iris", "--optimizers", "adam+horizon"], "`+horizon` applies to learned optimizers only"),
        (
            ["--tasks", "mlp_iris", "--backend", _OTHER_BACKEND],
            f"Keras is already imported in this process with the {keras.backend.backend()!r} backend",
        ),
    ],
)
def test_bad_benchmark_arguments_exit_2_before_anything_runs(tmp_path, capsys, argv, message):
    out = tmp_path / "bench"
    assert cli.main(["benchmark", *argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is in the `test` extra")
def test_benchmark_runs_on_the_backend_it_is_given(tmp_path):
    out = tmp_path / "bench"

    def benchmark(backend):
        return subprocess.run(
            [sys.executable, "-m", "keras_lopt_cli", "benchmark", "--backend", backend, "--tasks", "mlp_iris"]
            + ["--seeds", "0", "--steps", "3", "--optimizers", "learned", "--output", str(out)],
            capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow"),
        )

    proc = benchmark("jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = harness.read_results(str(out / "results.jsonl"))
    assert len(records) == 1 + len(specs.ADAM_GRID) and {r["backend"] for r in records} == {"jax"}
    assert (out / "table.md").read_text().startswith("Keras backend: jax. Seeds 0;")
    proc = benchmark("tensorflow")  # the same file: refused before anything runs
    assert proc.returncode == 2 and "holds runs of the jax backend" in proc.stderr, proc.stderr[-3000:]
    assert len(harness.read_results(str(out / "results.jsonl"))) == len(records)


def _independent_counts(records, candidate):
    """The four comparison counts, recomputed here from the records alone."""
    by = {(r["task"], r["optimizer"], r["seed"]): r for r in records}
    tasks, seeds = sorted({r["task"] for r in records}), sorted({r["seed"] for r in records})
    grid = [f"adam@{lr:g}" for lr in specs.ADAM_GRID]
    counts = {}
    for metric, key in (("train", "final_train_loss"), ("valid", "final_valid_loss")):
        adam = tuned = 0
        for task in tasks:
            best = min(grid, key=lambda s: np.mean([by[(task, s, seed)][key] for seed in seeds]))
            for seed in seeds:
                mine = by[(task, candidate, seed)][key]
                adam += mine < (1 - report.TIE_TOLERANCE) * by[(task, "adam@0.001", seed)][key]
                tuned += mine < (1 - report.TIE_TOLERANCE) * by[(task, best, seed)][key]
        counts[f"{metric}_vs_adam"], counts[f"{metric}_vs_tuned"] = adam, tuned
    return counts


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path):
    out = tmp_path / "quick"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_lopt.meta", "benchmark", "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = harness.read_results(str(out / "results.jsonl"))
    candidates = specs.expand(["learned", "learned+horizon"])
    assert len(records) == len(suites.QUICK_TASKS) * (len(candidates) + len(specs.ADAM_GRID))
    assert {r["steps"] for r in records} == {suites.QUICK_STEPS} and {r["seed"] for r in records} == {0}
    summary = json.loads((out / "summary.json").read_text())
    for candidate in candidates:
        counts = summary["counts"][candidate]
        mine = _independent_counts(records, candidate)
        assert {name: counts[name]["wins"] for name in mine} == mine, candidate
        assert all(counts[name]["runs"] == len(suites.QUICK_TASKS) for name in mine)
        assert counts["nonfinite"] == sum(r["diverged"] for r in records if r["optimizer"] == candidate)
        assert set(counts["ladders"]) == {"byte_mlp_lm_w64"}
    table = (out / "table.md").read_text()
    assert table in proc.stdout and "Final validation loss" in table
    assert (out / "curves.png").stat().st_size > 10_000
