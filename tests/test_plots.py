"""`keras-lopt plot ...`: the PNGs exist and the numbers behind them are right."""

import json
import struct
import sys

import numpy as np
import pytest

import keras_lopt_cli as cli
from keras_lopt import plots, probes, toy_problems

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    """(width, height) of a PNG, after checking its signature and header."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


def _assert_png(path, min_width=600, min_height=300):
    width, height = _png_size(path)
    assert width >= min_width and height >= min_height, (width, height)
    assert 10_000 < path.stat().st_size < 2_000_000


def test_plot_trajectories_command(tmp_path, capsys):
    out = tmp_path / "paths.png"
    code = cli.main(
        [
            "plot",
            "trajectories",
            "--problems",
            "product,rosenbrock",
            "--optimizers",
            "learned,adam,sgd",
            "--steps",
            "5",
            "--output",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert f"Wrote {out}" in capsys.readouterr().out
    _assert_png(out, min_width=900, min_height=700)


def test_trajectory_data():
    problem = toy_problems.get_problem("product")
    points, losses = toy_problems.trajectories(problem, "sgd@0.01", 3)
    assert points.shape == (len(problem.starts), 4, 2) and losses.shape == (len(problem.starts), 4)
    # Plain gradient descent on (x y - 1)^2, in numpy.
    expected = np.array(problem.starts, np.float64)
    for step in range(3):
        x, y = expected[:, 0], expected[:, 1]
        residual = x * y - 1
        np.testing.assert_allclose(losses[:, step], residual**2, rtol=1e-5)
        expected = expected - 0.01 * np.stack([2 * residual * y, 2 * residual * x], axis=1)
        np.testing.assert_allclose(points[:, step + 1], expected, rtol=1e-5)
    # The Adam-equivalent preset follows Adam's path at the same rate.
    learned, _ = toy_problems.trajectories(problem, "learned:adam_equivalent_v1@0.01", 5)
    adam, _ = toy_problems.trajectories(problem, "adam@0.01", 5)
    np.testing.assert_allclose(learned, adam, rtol=1e-5, atol=1e-6)


def test_trajectory_specs_take_the_problem_s_rates_unless_given():
    problem = toy_problems.get_problem("rosenbrock")
    assert toy_problems.describe("adam", problem) == ("adam", "adam, lr 0.01")
    assert toy_problems.describe("sgd", problem) == ("sgd", "sgd, lr 0.001")
    assert toy_problems.describe("sgd@0.5", problem) == ("sgd", "sgd, lr 0.5")
    assert toy_problems.describe("rmsprop", problem) == ("rmsprop", "rmsprop, lr 0.001")
    assert toy_problems.describe("learned:adam_equivalent_v1@0.02", problem) == (
        "learned",
        "learned adam_equivalent_v1, lr 0.02",
    )


def test_adam_probe_matches_the_adam_formula():
    gradients = np.linspace(-2, 2, 9)
    momenta = np.array([-0.5, 0.0, 1.5])
    rms, step = 0.7, 30
    data = probes.gradient_sweep("mlp_pes_v2", gradients, momenta, rms=rms, step=step)
    g, m = gradients[None, :], momenta[:, None]
    new_m = m + (g - m) * (1 - 0.9)
    new_v = rms**2 + (g**2 - rms**2) * (1 - 0.999)
    expected = new_m * np.sqrt(1 - 0.999**step) / (1 - 0.9**step) / (np.sqrt(new_v) + 1e-7)
    np.testing.assert_allclose(data["adam"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        data["learned"], data["direction"] * np.exp(data["log_multiplier"]), rtol=1e-5, atol=1e-7
    )
    # The Adam-equivalent preset's probe is Adam's.
    same = probes.gradient_sweep("adam_equivalent_v1", gradients, momenta, rms=rms, step=step)
    np.testing.assert_allclose(same["learned"], same["adam"], rtol=1e-5, atol=1e-7)
    progress = probes.progress_sweep("adam_equivalent_v1", [1, 10, 100], total_steps=100)
    np.testing.assert_allclose(progress["learned"], progress["adam"], rtol=1e-5, atol=1e-7)


def test_plot_probes_command_and_data(tmp_path):
    out = tmp_path / "probes.png"
    assert (
        cli.main(
            [
                "plot",
                "probes",
                "--presets",
                "adam_equivalent_v1,mlp_pes_v2",
                "--total-steps",
                "100",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    _assert_png(out, min_width=1200)
    data = plots.plot_probes(tmp_path / "again.png", presets=("mlp_pes_v2",), total_steps=50)
    sweep = data["gradient_sweep"]["mlp_pes_v2"]
    assert sweep["learned"].shape == (3, len(data["gradients"]))
    assert data["progress_sweep"]["mlp_pes_v2"]["learned"].shape == data["steps"].shape
    assert data["steps"][0] == 1 and data["steps"][-1] == 50
    assert np.all(np.isfinite(sweep["learned"]))


def test_plot_probes_defaults_to_the_default_preset_and_says_it_created_a_directory(tmp_path, capsys):
    from keras_lopt import presets

    out = tmp_path / "new" / "probes.png"
    assert cli.main(["plot", "probes", "--total-steps", "20", "--output", str(out)]) == 0
    _assert_png(out, min_width=1000)
    printed = capsys.readouterr().out
    assert f"Wrote {out} (created the directory {tmp_path / 'new'})" in printed
    assert cli.main(["plot", "probes", "--total-steps", "20", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"Wrote {out}")  # the directory exists now
    data = plots.plot_probes(tmp_path / "default.png", total_steps=20)
    assert list(data["gradient_sweep"]) == [presets.DEFAULT_PRESET]


def _results_file(path, tasks=("task_a", "task_b")):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for task in tasks:
            for optimizer in ("learned:x", "adam@0.001", "adam@0.01"):
                for seed in (0, 1):
                    curve = np.exp(-np.linspace(0, 3, 20) * rng.uniform(0.5, 2)).tolist()
                    f.write(
                        json.dumps(
                            {
                                "task": task,
                                "optimizer": optimizer,
                                "seed": seed,
                                "steps": 100,
                                "final_train_loss": curve[-1],
                                "final_valid_loss": curve[-1] * 1.1,
                                "diverged": False,
                                "seconds": 1.0,
                                "curve_steps": np.linspace(0, 99, 20).astype(int).tolist(),
                                "curve": curve,
                            }
                        )
                        + "\n"
                    )


def test_plot_curves_command_and_data(tmp_path):
    from PIL import Image

    results = tmp_path / "results.jsonl"
    _results_file(results)
    out = tmp_path / "curves.png"
    assert cli.main(["plot", "curves", "--results", str(results), "--output", str(out)]) == 0
    _assert_png(out, min_width=900)
    summary = plots.plot_benchmark_curves(results, tmp_path / "b.png", optimizers=["learned:x"], tasks=["task_b"])
    records = [json.loads(line) for line in open(results)]
    want = np.mean([r["final_train_loss"] for r in records if r["task"] == "task_b" and r["optimizer"] == "adam@0.001"])
    assert list(summary["tasks"]) == ["task_b"] and list(summary["counts"]) == ["learned:x"]
    assert summary["tasks"]["task_b"]["losses"]["adam@0.001"]["train"] == pytest.approx(want)
    # One task, one panel: no blank panels beside it.
    with Image.open(tmp_path / "b.png") as image:
        assert image.width < 600
    with pytest.raises(ValueError, match="Optimizer 'adam' is not in"):
        plots.plot_benchmark_curves(results, tmp_path / "c.png", optimizers=["adam"])


def test_plot_meta_training_command_and_data(tmp_path):
    from keras_lopt.meta.config import MetaTrainConfig
    from keras_lopt.meta.trainer import MetaTrainer

    config = MetaTrainConfig.from_dict(
        {
            "name": "plot_test_v1",
            "task_families": ["quadratic"],
            "outer_steps": 4,
            "eval_every": 2,
            "eval_horizon": 10,
            "checkpoint_every": 2,
            "estimator": {"kind": "es", "num_pairs": 2, "truncation_length": 5},
        }
    )
    MetaTrainer(config, tmp_path / "run").train(progress=False)
    out = tmp_path / "meta.png"
    argv = ["plot", "meta-training", "--runs", str(tmp_path / "run"), "--labels", "quad", "--window", "2"]
    assert cli.main([*argv, "--output", str(out)]) == 0
    _assert_png(out, min_width=1000)
    runs = plots.plot_meta_training([tmp_path / "run"], tmp_path / "b.png", window=3)
    run = runs["run"]
    assert run["meta_loss"].shape == (4,) and np.all(np.isfinite(run["meta_loss"]))
    np.testing.assert_array_equal(run["eval_step"], [0, 2, 4])  # the start is evaluated too
    assert run["eval_meta_loss"].shape == (3,)
    with pytest.raises(ValueError, match="one label per run"):
        plots.plot_meta_training([tmp_path / "run"], tmp_path / "c.png", labels=["a", "b"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["trajectories", "--problems", "sphere"], "Unknown problem 'sphere'"),
        (["trajectories", "--optimizers", "adam@fast"], "Unknown optimizer spec 'adam@fast'"),
        (["trajectories", "--optimizers", "sgd:mlp_pes_v2"], "Unknown optimizer spec 'sgd:mlp_pes_v2'"),
        (["trajectories", "--steps", "0"], "`--steps` must be a positive integer. Received: 0"),
        (["probes", "--total-steps", "1"], "`total_steps` must be an integer >= 2. Received: total_steps=1"),
        (["curves", "--results", "missing.jsonl"], "Results file not found: 'missing.jsonl'"),
        (["meta-training", "--runs", "no_such_run"], "No meta-training checkpoint in 'no_such_run'"),
    ],
)
def test_bad_plot_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "x.png"
    assert cli.main(["plot", *argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'keras-lopt\[plots\]'"):
        plots._pyplot()
