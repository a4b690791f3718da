import json
import math
import os
import subprocess
import sys

import pytest

from keras_lopt.evaluation import specs, tuning

pytest.importorskip("keras_tuner")


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


def test_grid_learning_rates():
    assert tuning.grid_learning_rates(1) == [1e-3]
    assert tuning.grid_learning_rates(3) == [1e-4, 0.00316, 0.1]
    assert len(tuning.grid_learning_rates(10)) == 10
    with pytest.raises(ValueError, match="Received: budget=0"):
        tuning.grid_learning_rates(0)


def test_searches_run_with_keras_tuner_and_resume_without_repeating_trials(tmp_path):
    out = str(tmp_path)
    logged = []
    grid = tuning.run_search("mlp_wine", "adam_grid", [1, 2], 10, 0, out, log=logged.append)
    assert sorted((t["budget"], t["hyperparameters"]["learning_rate"]) for t in grid) == [
        (1, 1e-3),
        (2, 1e-4),
        (2, 0.1),
    ]
    bayes = tuning.run_search("mlp_wine", "adamw_bayes", [2, 3], 10, 0, out, log=logged.append)
    assert [t["trial"] for t in sorted(bayes, key=lambda t: t["trial"])] == [1, 2, 3]
    assert set(bayes[0]["hyperparameters"]) == {"learning_rate", "weight_decay", "beta_1"}
    assert len(logged) == 6 and len(_lines(tmp_path / "trials.jsonl")) == 6
    assert os.path.isfile(tmp_path / "tuners" / "mlp_wine" / "adamw_bayes" / "oracle.json")

    # A rerun trains nothing; a larger budget continues the same Bayesian search.
    tuning.run_search("mlp_wine", "adam_grid", [1, 2], 10, 0, out, log=logged.append)
    more = tuning.run_search("mlp_wine", "adamw_bayes", [4], 10, 0, out, log=logged.append)
    assert len(logged) == 7 and "adamw_bayes      trial   4" in logged[-1]
    assert [t for t in more if t["trial"] <= 3] == bayes

    # Without KerasTuner's directories the trial file alone still saves the work.
    import shutil

    shutil.rmtree(tmp_path / "tuners")
    tuning.run_search("mlp_wine", "adam_grid", [2], 10, 0, out, log=logged.append)
    assert len(logged) == 7


def _trial(search, budget, trial, train, valid, lr=1e-3):
    return dict(
        task="t",
        search=search,
        budget=budget,
        project=f"{search}_{budget}",
        trial=trial,
        seed=0,
        steps=100,
        hyperparameters={"learning_rate": lr},
        final_train_loss=train,
        final_valid_loss=valid,
        diverged=not math.isfinite(train),
        steps_spent=100,
        seconds=0.0,
    )


def test_trials_to_match_on_hand_made_results(tmp_path):
    results = [
        dict(task="t", optimizer="learned", seed=0, steps=100, final_train_loss=1.0, final_valid_loss=2.0),
        dict(task="u", optimizer="learned", seed=0, steps=100, final_train_loss=0.1, final_valid_loss=2.0),
        dict(task="t", optimizer="adam", seed=0, steps=100, final_train_loss=0.5, final_valid_loss=2.0),
    ]
    bayes = [
        # Trial 2 has the lowest training loss but is not picked: its validation loss is worse.
        _trial("adamw_bayes", 10, 1, 3.0, 3.0),
        _trial("adamw_bayes", 10, 2, 0.5, 9.0),
        _trial("adamw_bayes", 10, 3, float("nan"), float("nan")),
        _trial("adamw_bayes", 10, 4, 1.0005, 2.5),  # within TIE_TOLERANCE of 1.0: a match
        _trial("adamw_bayes", 10, 5, 0.1, 1.0),
    ]
    for t in bayes:
        t["project"] = "adamw_bayes"
    grid = [
        _trial("adam_grid", 1, 1, 2.0, 2.5),
        _trial("adam_grid", 3, 1, 5.0, 5.0),
        _trial("adam_grid", 3, 2, 1.5, 1.5),
        _trial("adam_grid", 3, 3, 0.9, 1.6),
    ]
    other = [dict(t, task="u") for t in grid]
    path = tmp_path / "trials.jsonl"
    with open(path, "w") as f:
        for t in bayes + grid + other + [dict(bayes[-1], final_train_loss=0.2)]:  # last record of a trial wins
            f.write(json.dumps(t) + "\n")
    trials = tuning.load_trials(str(path))
    assert len(trials) == len(bayes) + len(grid) + len(other)

    report = tuning.match_report(results, trials, tuning.SEARCHES, [1, 3, 10])
    assert set(report) == {"t", "u"}
    t = report["t"]["searches"]
    assert [p["trials"] for p in t["adamw_bayes"]["points"]] == [1, 2, 3, 4, 5]
    assert [p["final_train_loss"] for p in t["adamw_bayes"]["points"]] == [3.0, 3.0, 3.0, 1.0005, 0.2]
    assert t["adamw_bayes"]["matched"]["trials"] == 4
    assert t["adamw_bayes"]["matched"]["steps_spent"] == 400
    # The 3-trial grid picks lr with valid 1.5 (train 1.5): no match at any budget.
    assert [p["trials"] for p in t["adam_grid"]["points"]] == [1, 3]
    assert t["adam_grid"]["matched"] is None and t["adam_grid"]["max_trials"] == 3
    assert report["t"]["best"] == "adamw_bayes"
    assert report["u"]["best"] is None and report["u"]["searches"]["adamw_bayes"]["points"] == []

    table = tuning.markdown_match_table(report)
    assert "| t | 1 (2) | not matched within 3 |" in table
    assert "**4** (400)" in table and "4 (adamw_bayes)" in table
    assert "| u | 0.1 (2) | not matched within 3 |" in table and "not run" in table
    tuning.plot_match(report, str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").stat().st_size > 10_000

    # On validation loss (reference 2.0) the 3-trial grid's pick (1.5) matches.
    valid = tuning.match_report(results, trials, tuning.SEARCHES, [1, 3, 10], loss="final_valid_loss")
    assert valid["t"]["searches"]["adam_grid"]["matched"]["trials"] == 3
    assert valid["t"]["searches"]["adamw_bayes"]["matched"]["trials"] == 5
    with pytest.raises(ValueError, match="Received: loss='accuracy'"):
        tuning.match_report(results, trials, tuning.SEARCHES, [1], loss="accuracy")


@pytest.mark.slow
def test_tune_benchmark_cli_runs_in_pieces(tmp_path):
    out = tmp_path / "tune"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable,
        "-m",
        "keras_lopt.meta",
        "tune-benchmark",
        "--tasks",
        "mlp_wine",
        "--optimizers",
        "adam",
        "--searches",
        "adam_grid",
        "--budget",
        "1,2",
        "--steps",
        "10",
        "--output",
        str(out),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    learned = specs.canonical("learned")
    summary = json.loads((out / "summary.json").read_text())
    match = summary["trials_to_match"][learned]["final_train_loss"]["mlp_wine"]
    assert match["reference"]["optimizer"] == learned
    assert [p["trials"] for p in match["searches"]["adam_grid"]["points"]] == [1, 2]
    assert f"Trials to match {learned} on validation loss" in (out / "table.md").read_text()
    assert (out / "trials_to_match.png").stat().st_size > 10_000
    assert summary["trials_to_match"][learned]["final_valid_loss"]["mlp_wine"]["loss"] == "final_valid_loss"
    assert len(_lines(out / "results.jsonl")) == 2 and len(_lines(out / "trials.jsonl")) == 3

    # --report-only trains nothing and reports the budgets asked for.
    report = subprocess.run(command + ["--budget", "1", "--report-only"], capture_output=True, text=True, env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    match = summary["trials_to_match"][learned]["final_train_loss"]["mlp_wine"]
    assert [p["trials"] for p in match["searches"]["adam_grid"]["points"]] == [1]
    assert len(_lines(out / "results.jsonl")) == 2 and len(_lines(out / "trials.jsonl")) == 3

    bad = subprocess.run(
        command[:-2] + ["--searches", "adam_random", "--output", str(out)], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "Unknown search 'adam_random'" in bad.stderr
