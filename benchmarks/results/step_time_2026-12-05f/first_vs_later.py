"""Scratch (2026-12-05, twelfth session): the first `fit` call of two fresh
10-variable residual MLPs with XLA in one process, under cProfile: the
optimizer's `apply` (its tracing), TensorFlow's tracing of the train step,
and `call_flat` (XLA's compilation and the step). `python first_vs_later.py
learned|adam`."""

import cProfile, pstats, io, sys, time
sys.path.insert(0, "/work/main/benchmarks"); sys.path.insert(0, "/work/main")
import numpy as np, keras
import step_time, keras_lopt
name = sys.argv[1]
x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32"); y = np.zeros(32, "int64")
for which in ("first", "later"):
    model, shape = step_time.residual_mlp(10)
    opt = keras_lopt.LearnedOptimizer() if name == "learned" else keras.optimizers.Adam()
    model.compile(optimizer=opt, loss=step_time.LOSS, jit_compile=True)
    pr = cProfile.Profile(); t = time.perf_counter(); pr.enable()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    pr.disable(); total = time.perf_counter() - t
    st = pstats.Stats(pr); st.calc_callees()
    rows = {f"{k[0].split('/')[-1]}:{k[2]}": v[3] for k, v in st.stats.items()}
    def get(suffix):
        return max((v for k, v in rows.items() if k.endswith(suffix)), default=0.0)
    print(name, which, "total", round(total, 2), "apply", round(get("optimizer.py:apply") or get("base_optimizer.py:apply"), 2),
          "trace_function", round(get("tracing_compilation.py:trace_function"), 2), "call_flat", round(get("atomic_function.py:call_flat"), 2))
