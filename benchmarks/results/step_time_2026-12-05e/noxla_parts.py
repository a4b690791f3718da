# ruff: noqa: E402
"""Scratch (2026-12-05, eleventh session): step_time.py's residual MLP fit step
without XLA, `python noxla_parts.py full|trivial`; `trivial` replaces the
rule after the moments (`rule.step_many_with_moments`) by a zero update, so
the step keeps the gradient check, the moments, the programs' launches and
the assignments (REPO: the checkout to import)."""

import os
import sys

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import step_time as st
from keras import ops

from keras_lopt import rule

variant = sys.argv[1]
jit = sys.argv[2] == "xla" if len(sys.argv) > 2 else False
if variant == "trivial":

    def trivial(network, states, gradients, parameters, learning_rates, **kw):
        return [(ops.zeros_like(g), s) for g, s in zip(gradients, states)]

    rule.step_many_with_moments = trivial
times, models = st.time_fit(lambda: st.residual_mlp(20), 32, jit, 12, 100)
print(
    variant,
    "xla" if jit else "noxla",
    "learned %.3f adam %.3f ratio %.3f"
    % (times["learned"] * 1e3, times["adam"] * 1e3, times["learned"] / times["adam"]),
)
