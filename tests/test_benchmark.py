import json
import os
import subprocess
import sys

import pytest

from keras_lopt.meta import eval_tasks, evaluate


def test_every_evaluation_task_builds_and_matches_its_data():
    for name in eval_tasks.eval_task_names():
        task = eval_tasks.get_eval_task(name)
        assert task.name == name
        model = task.build_model()
        x, y = task.train
        out = model(x[:4])
        loss = float(task.loss(y[:4], out))
        assert loss == loss and loss > 0, name


def test_benchmark_picks_tuned_adam_on_validation_and_resumes(tmp_path):
    path = str(tmp_path / "results.jsonl")
    logged = []
    specs = ["learned:adam_equivalent_v1", "adam", "adam_tuned"]
    results = evaluate.run_benchmark(["mlp_wine"], specs, 30, [0], output_path=path, log=logged.append)
    assert len(results) == 2 + len(evaluate.ADAM_GRID)
    summary = evaluate.summarize(results, specs)["mlp_wine"]
    grid = {f"adam@{lr:g}": summary["optimizers"][f"adam@{lr:g}"]["final_valid_loss"] for lr in evaluate.ADAM_GRID}
    assert summary["optimizers"]["adam_tuned"]["picked"] == min(grid, key=grid.get)
    # adam_equivalent_v1 reproduces Adam(1e-3): the two runs tie.
    assert evaluate.win_counts({"mlp_wine": summary}, specs[0])["adam"]["wins"] == 0
    assert summary["optimizers"][specs[0]]["final_train_loss"] == pytest.approx(
        summary["optimizers"]["adam"]["final_train_loss"], rel=1e-4
    )
    n_logged = len(logged)
    again = evaluate.run_benchmark(["mlp_wine"], specs, 30, [0], output_path=path, log=logged.append)
    assert len(logged) == n_logged  # nothing re-ran
    assert again == results
    table = evaluate.markdown_table(evaluate.summarize(again, specs), specs)
    assert "| mlp_wine |" in table and "lr=" in table


def test_unknown_specs_and_tasks_are_rejected():
    with pytest.raises(ValueError, match="Unknown optimizer spec 'rmsprob'"):
        evaluate.expand_specs(["rmsprob"])
    assert type(evaluate.make_optimizer("rmsprop")).__name__ == "RMSprop"
    assert type(evaluate.make_optimizer("lion")).__name__ == "Lion"
    with pytest.raises(ValueError, match="Unknown optimizer spec 'adam@-1'"):
        evaluate.expand_specs(["adam@-1"])
    with pytest.raises(ValueError, match="Unknown evaluation task 'imagenet'"):
        eval_tasks.get_eval_task("imagenet")


def test_benchmark_cli_writes_json_table_and_plot(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_lopt.meta", "benchmark", "--tasks", "regression_diabetes",
         "--optimizers", "learned,adam", "--steps", "20", "--seeds", "0", "--output", str(out)],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]["regression_diabetes"]["optimizers"]) == {"learned", "adam"}
    assert (out / "curves.png").stat().st_size > 10_000
    assert "learned beats adam" in proc.stdout


def test_export_cli_writes_a_loadable_preset(tmp_path):
    import keras_lopt
    from keras_lopt.meta.config import MetaTrainConfig
    from keras_lopt.meta.trainer import MetaTrainer

    config = {
        "name": "export_test_v1", "task_families": ["quadratic"], "outer_steps": 2,
        "eval_every": 0, "checkpoint_every": 1,
        "estimator": {"kind": "es", "num_pairs": 2, "truncation_length": 5},
    }
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    MetaTrainer(MetaTrainConfig.from_dict(config), tmp_path / "run").train(progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "keras_lopt.meta", "export", "--config", str(config_path),
         "--run", str(tmp_path / "run"), "--output", str(tmp_path / "preset"), "--name", "export_test_v2"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # No evaluation ran (eval_every 0), so the final weights are exported.
    assert "Exported the final weights (outer step 2) as 'export_test_v2'" in proc.stdout
    optimizer = keras_lopt.load_learned_optimizer(str(tmp_path / "preset"))
    assert optimizer.network.name == "export_test_v2"


def test_classic_group_runs_every_classic_keras_optimizer_at_its_defaults():
    import keras

    specs = evaluate.expand_specs(["learned", "classic", "adam"])
    assert specs == ["learned", *evaluate.CLASSIC_OPTIMIZERS]
    classes = {
        "sgd": "SGD", "sgdm": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta",
        "adamax": "Adamax", "nadam": "Nadam", "adam": "Adam", "adamw": "AdamW", "lion": "Lion",
    }
    task = eval_tasks.get_eval_task("mlp_wine")
    for spec in evaluate.CLASSIC_OPTIMIZERS:
        optimizer = evaluate.make_optimizer(spec)
        assert type(optimizer).__name__ == classes[spec]
        default = getattr(keras.optimizers, classes[spec])()
        assert float(optimizer.learning_rate) == float(default.learning_rate), spec
        if classes[spec] == "SGD":
            assert optimizer.momentum == (0.9 if spec == "sgdm" else 0.0)
        result = evaluate.train_once(task, spec, 5, 0)
        assert not result.diverged and result.final_train_loss > 0, spec
