"""Multi-worker meta-training on 127.0.0.1 (MultiWorkerMirroredStrategy).

Two worker processes must take exactly the outer steps one process takes,
and a run whose worker dies must stop with a clear error and resume from the
chief's checkpoint to the same result.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_lopt.meta import local_cluster
from keras_lopt.meta.config import MetaTrainConfig
from keras_lopt.meta.trainer import MetaTrainer

from conftest import checkpoint_step

# PES keeps trajectories in flight across outer steps, so checkpoints must
# gather them from both workers; 4 task slots give each worker two.
CONFIG = {
    "name": "distributed_test_v1",
    "task_families": ["quadratic"],
    "outer_steps": 8,
    "eval_every": 4,
    "eval_tasks": 2,
    "checkpoint_every": 2,
    "tasks_per_step": 4,
    "estimator": {
        "kind": "pes",
        "num_pairs": 4,
        "sigma": 0.01,
        "truncation_length": 10,
        "min_horizon": 20,
        "max_horizon": 40,
    },
    "inner_learning_rate": 0.01,
    "outer_learning_rate": 0.01,
    "eval_horizon": 50,
}
KEYS = ("theta", "outer_optimizer/m", "outer_optimizer/v", "best_theta", "meta_loss", "grad_norm", "eval_meta_loss")


def _single_process(tmp_path, config):
    """The reference: one process, same config."""
    trainer = MetaTrainer(MetaTrainConfig.from_dict(config), tmp_path / "single")
    trainer.train(progress=False)
    with np.load(trainer.checkpoint_path) as data:
        return {k: data[k] for k in data.files}


def _write_config(tmp_path, **changes):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(CONFIG, **changes)))
    return str(path)


def _worker(ports, index, args):
    env = local_cluster.cluster_env(ports, index, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return subprocess.Popen(
        [sys.executable, "-m", "keras_lopt.meta", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _assert_same_run(checkpoint, reference):
    with np.load(checkpoint) as data:
        assert int(data["step"]) == int(reference["step"])
        for key in KEYS:
            np.testing.assert_array_equal(data[key], reference[key], err_msg=key)
        worker_keys = sorted(k for k in data.files if k.startswith("worker"))
        assert worker_keys == sorted(k for k in reference if k.startswith("worker"))
        for key in worker_keys:
            np.testing.assert_array_equal(data[key], reference[key], err_msg=key)


@pytest.mark.slow
def test_two_workers_take_the_same_outer_steps_as_one_process(tmp_path):
    single_process = _single_process(tmp_path, CONFIG)
    config = _write_config(tmp_path)
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_lopt.meta",
            "local-cluster",
            "--workers",
            "2",
            "--",
            "meta-train",
            "--config",
            config,
            "--output",
            str(run),
            "--no-progress",
        ],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Only the chief prints and writes.
    assert "[worker 0] Outer steps: 8." in proc.stdout
    assert "[worker 1] Outer steps" not in proc.stdout
    assert "[worker 1] step " not in proc.stdout
    _assert_same_run(run / "checkpoint.npz", single_process)
    with open(run / "preset" / "metadata.json") as f:
        assert json.load(f)["provenance"]["replicas"] == 2


@pytest.mark.slow
def test_a_dead_worker_stops_the_run_and_resume_gives_the_same_result(tmp_path):
    # Long enough that the kill lands mid-run.
    changes = {"outer_steps": 60, "eval_every": 20}
    single_process = _single_process(tmp_path, dict(CONFIG, **changes))
    config = _write_config(tmp_path, **changes)
    run = tmp_path / "run"
    args = ["meta-train", "--config", config, "--output", str(run), "--no-progress"]
    ports = local_cluster.free_ports(2)
    chief, other = _worker(ports, 0, args), _worker(ports, 1, args)
    deadline = time.time() + 900
    while checkpoint_step(run / "checkpoint.npz") < 4 and time.time() < deadline and chief.poll() is None:
        time.sleep(0.05)
    assert chief.poll() is None, "the run ended before the kill"
    other.send_signal(signal.SIGKILL)
    other.wait()
    out, _ = chief.communicate(timeout=300)
    assert chief.returncode != 0
    assert "stopped responding" in out and "--resume" in out, out[-3000:]
    # The chief's last checkpoint is whole and mid-run.
    step_at_kill = checkpoint_step(run / "checkpoint.npz")
    assert 4 <= step_at_kill < 60

    ports = local_cluster.free_ports(2)
    resumed = [_worker(ports, i, args + ["--resume"]) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert f"at outer step {step_at_kill}" in outputs[0]
    _assert_same_run(run / "checkpoint.npz", single_process)


def test_local_cluster_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received: 0"):
        local_cluster.run_local_cluster(0, ["meta-train"])
    with pytest.raises(ValueError, match="after `--`"):
        local_cluster.run_local_cluster(2, [])
