# ruff: noqa: E402
"""Scratch (2026-12-05, thirteenth session): the first `fit` call of a fresh
residual MLP without XLA in the train step, with Keras' Adam against Keras'
Adam whose whole `apply` is one XLA-compiled program (what compiling an
update with XLA on its own costs for Adam's arithmetic), e.g.
`python xla_adam.py 10 xla_adam` (or `adam`)."""

import os
import sys
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
import keras
import numpy as np
import tensorflow as tf
from step_time import residual_mlp


class XlaAdam(keras.optimizers.Adam):
    """Adam whose `apply` after the build is one `tf.function(jit_compile=True)`."""

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            return super().apply(grads, trainable_variables)
        if not hasattr(self, "_xla_apply"):
            variables = list(trainable_variables)

            def apply(gradients):
                return keras.optimizers.Adam.apply(self, gradients, variables)

            self._xla_apply = tf.function(apply, jit_compile=True, autograph=False)
        return self._xla_apply(list(grads))


size, kind = int(sys.argv[1]), sys.argv[2]
model, _ = residual_mlp(size)
x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
y = np.random.default_rng(1).integers(0, 10, size=(32,))
optimizer = XlaAdam() if kind == "xla_adam" else keras.optimizers.Adam()
model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False)
start = time.perf_counter()
model.fit(x, y, batch_size=32, epochs=1, verbose=0)
first = time.perf_counter() - start
start = time.perf_counter()
model.fit(x, y, batch_size=32, epochs=20, verbose=0)
later = (time.perf_counter() - start) / 20
print(f"size {size} {kind}: first fit {first:.2f} s, later epochs {later * 1e3:.1f} ms")
