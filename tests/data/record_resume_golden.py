"""Records `checkpoint_resume_golden.npz`: one outer step after restoring
committed meta_runs/ checkpoints, computed by the code that wrote them.

Run from a checkout of the commit whose trainer wrote old-format checkpoints
(e.g. `git worktree add /tmp/old 8d80d7f`), with that checkout first on the
path:

    PYTHONPATH=/tmp/old python tests/data/record_resume_golden.py RUN_DIR... OUT.npz

For each run directory it copies `checkpoint.npz` to a scratch directory,
restores it with `MetaTrainer(config from the checkpoint).restore()`, takes
one `train_step()` and stores the meta-weights, the outer Adam moments, the
meta-loss and the gradient norm under `<run name>/<key>`.
"""

import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from keras_lopt.meta.config import MetaTrainConfig
from keras_lopt.meta.trainer import MetaTrainer


def record(run_dir, scratch):
    with np.load(os.path.join(run_dir, "checkpoint.npz")) as data:
        config = MetaTrainConfig.from_dict(json.loads(str(data["config_json"])))
    shutil.copy(os.path.join(run_dir, "checkpoint.npz"), scratch)
    trainer = MetaTrainer(config, scratch)
    assert trainer.restore()
    step = trainer.step
    meta_loss, grad_norm = trainer.train_step()
    return {
        "step": np.int64(step),
        "theta": trainer.theta,
        "adam_m": trainer.adam_m,
        "adam_v": trainer.adam_v,
        "meta_loss": np.float64(meta_loss),
        "grad_norm": np.float64(grad_norm),
    }


def main(run_dirs, output):
    arrays = {}
    for run_dir in run_dirs:
        name = os.path.basename(os.path.normpath(run_dir))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            for key, value in record(run_dir, scratch).items():
                arrays[f"{name}/{key}"] = value
        print(f"{name}: {time.perf_counter() - start:.0f}s", flush=True)
    np.savez(output, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:-1], sys.argv[-1])
