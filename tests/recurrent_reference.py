"""An independent numpy implementation of the recurrent architectures' rule."""

import math

import numpy as np

from keras_lopt import features

from reference import feature_matrix, mlp


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm(kernel, recurrent_kernel, bias, x, h, c):
    z = x @ kernel + h @ recurrent_kernel + bias
    i, f, g, o = np.split(z, 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def loss_features(loss, known, statistics):
    """(features [3], new statistics [3]) for one step."""
    count = statistics[-1]
    columns = [float(known)]
    averages = []
    for i, decay in enumerate(features.LOSS_AVERAGE_DECAYS):
        average = statistics[i]
        if known and count > 0:
            corrected = average / (1 - decay**count)
            columns.append(math.tanh((loss - corrected) / (abs(corrected) + 1e-12)))
        else:
            columns.append(0.0)
        averages.append(average + (1 - decay) * (loss - average) if known else average)
    return np.array(columns), np.array([*averages, count + (1 if known else 0)], np.float64)


def context(x, loss_columns):
    """x: the [N, F] feature matrix -> the context vector [C]."""
    n_summarized = len(features.SUMMARIZED_FEATURE_NAMES)
    summaries = []
    for j in range(n_summarized):
        summaries += [x[:, j].mean(), np.sqrt(np.mean(x[:, j] ** 2))]
    n_element = len(features.ELEMENT_FEATURE_NAMES)
    return np.concatenate([summaries, x[0, n_element:], loss_columns])


def ffn_lstm(weights, x, ctx, h, c):
    h, c = lstm(*weights[:3], ctx, h, c)
    inputs = np.concatenate([x, np.broadcast_to(h, (x.shape[0], h.size))], axis=1)
    direction, magnitude = mlp(weights[3:], inputs)
    return direction, magnitude, h, c


def hyper_lstm(weights, x, ctx, h, c):
    h, c = lstm(*weights[:3], ctx, h, c)
    logits = h @ weights[3] + weights[4]
    a = np.exp(logits - logits.max())
    a = a / a.sum()
    mixed = [np.tensordot(a, w, axes=1) for w in weights[5:]]
    direction, magnitude = mlp(mixed, x)
    return direction, magnitude, h, c


def rule_step(forward, weights, magnitude_scale, lr, state, g, p, t, total_steps, loss, known):
    """One step. state: (momenta, v, loss_statistics, h, c). Returns (update, state)."""
    momenta, v, statistics, h, c = state
    g64 = np.asarray(g, np.float64)
    momenta = [m + (g64 - m) * (1 - d) for m, d in zip(momenta, features.MOMENTUM_DECAYS)]
    v = v + (g64**2 - v) * (1 - features.SECOND_MOMENT_DECAY)
    x = feature_matrix(g64, p, momenta, v, t, total_steps)
    loss_columns, statistics = loss_features(loss, known, statistics)
    direction, magnitude, h, c = forward(weights, x, context(x, loss_columns), h, c)
    update = lr * direction * np.exp(magnitude_scale * magnitude)
    return update.reshape(np.shape(g)), (momenta, v, statistics, h, c)
