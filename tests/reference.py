"""An independent numpy implementation of the learned rule, for golden tests."""

import math

import numpy as np

from keras_lopt import features


def mlp(weights, x):
    """weights: [k0, b0, k1, b1, ...]; x: [N, F] -> (direction, magnitude)."""
    h = x.astype(np.float64)
    n_layers = len(weights) // 2
    for i in range(n_layers):
        h = h @ weights[2 * i].astype(np.float64) + weights[2 * i + 1]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0], h[:, 1]


def feature_matrix(g, p, momenta, v, t, total_steps):
    """All features of one tensor as [N, F] (float64)."""
    g, p, v = (np.asarray(a, np.float64).ravel() for a in (g, p, v))
    momenta = [np.asarray(m, np.float64).ravel() for m in momenta]
    c2 = math.sqrt(1 - features.SECOND_MOMENT_DECAY**t)
    denom = np.sqrt(v) + features.EPSILON
    tiny = features.TENSOR_RMS_EPSILON
    cols = [g * c2 / denom]
    cols += [m * c2 / (1 - d**t) / denom for m, d in zip(momenta, features.MOMENTUM_DECAYS)]
    cols += [
        g / np.sqrt(np.mean(g**2) + tiny),
        p / np.sqrt(np.mean(p**2) + tiny),
        np.sqrt(v / (np.mean(v) + tiny)),
    ]
    progress = min(t / total_steps, 1.0) if total_steps > 0 else 0.0
    scalars = [math.tanh(t / s) for s in features.STEP_TIMESCALES]
    scalars += [progress, float(total_steps > 0), math.log10(g.size)]
    cols += [np.full_like(g, s) for s in scalars]
    return np.stack(cols, axis=1)


def rule_step(weights, magnitude_scale, lr, state, g, p, t, total_steps, max_log_multiplier=None):
    """One step of the rule. state: (momenta list, v). Returns (update, state)."""
    momenta, v = state
    g64 = np.asarray(g, np.float64)
    momenta = [m + (g64 - m) * (1 - d) for m, d in zip(momenta, features.MOMENTUM_DECAYS)]
    v = v + (g64**2 - v) * (1 - features.SECOND_MOMENT_DECAY)
    x = feature_matrix(g64, p, momenta, v, t, total_steps)
    direction, magnitude = mlp(weights, x)
    log_multiplier = magnitude_scale * magnitude
    if max_log_multiplier is not None:
        log_multiplier = max_log_multiplier * np.tanh(log_multiplier / max_log_multiplier)
    update = lr * direction * np.exp(log_multiplier)
    return update.reshape(np.shape(g)), (momenta, v)
