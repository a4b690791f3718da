"""Would a selection-style task have caught the floor's cost? The
selection suite's residual LayerNorm MLP (3 blocks, width 64) on digits
(1797 examples) for 5000 steps, with the benchmark's harness.

Usage: python digits_5k_probe.py SEED SPEC [SPEC ...]  (one JSON line per run)
"""

import dataclasses
import json
import sys

from keras_lopt.evaluation import harness, selection_suite
from keras_lopt.evaluation.tasks import EvalTask, cached, dataset, sparse_ce


@cached
def _digits():
    (tx, ty), (vx, vy) = dataset("digits")
    return (tx.reshape(len(tx), -1), ty), (vx.reshape(len(vx), -1), vy)


def model():
    return selection_suite.resmlp_ln_model(inputs=64, classes=10)


task = EvalTask(
    "resmlp_ln_digits_5k", "residual LayerNorm MLP on digits, 5000 steps", model, sparse_ce(), _digits, 32, 5000, 3.0
)
for spec in sys.argv[2:]:
    r = harness.train_once(task, spec, seed=int(sys.argv[1]))
    print(json.dumps({k: v for k, v in dataclasses.asdict(r).items() if k not in ("curve", "curve_steps")}), flush=True)
