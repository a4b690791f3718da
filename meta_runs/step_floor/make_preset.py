"""A preset with the same weights as SOURCE but other controller settings.

The adaptive controller keeps a per-tensor log step `s` in
`log_step_range` and moves it by at most `max_step_change` a step,
`s += max_step_change * tanh(change)` with `change = hidden @
controller_kernel_1 + controller_bias_1`; the step is `learning_rate *
direction * exp(s)`. Raising the low end puts a floor under the step it can
shrink to, without touching the weights. Used to test, on the selection
suite, whether the default's shrinking to its lowest step on plateaus (0.1
x its rate: gru_copy, mlp_adding_w64) is what loses to Adam(1e-3). With
`--controller-bias`, the controller's output bias (the drift of `s` while
its hidden units are quiet) is replaced too (`meta_runs/growth_bias`).
With `--slow-alignment-gain A`, two of the controller's hidden units
(`--units I J`, default the two with the smallest output weights of the
default, 6 and 7) are rewritten to add `A * average_alignment_momentum_0p99`
(the running average of the cosine between the gradient and the slow
momentum's direction) to `change`: `relu(x) * A + relu(-x) * (-A)`
(`meta_runs/slow_alignment`). With `--brake G W B`, unit I instead
becomes a one-sided brake, `-relu(-G * average_alignment_momentum_0p99 +
W * log_step + B + K * loss_change_vs_average_0p99 + F *
loss_change_vs_average_0p9 + T * step_tanh_1000)` added to `change`
(`--brake-loss-weight K`, `--brake-fast-loss-weight F`, `--brake-time-weight
T`, default 0; with F = -K the two loss inputs give the difference of the
loss's fast and slow averages, a trend without the batch's noise; it acts only while the slow alignment
is negative enough, or the step high, and, with K > 0, the training loss
not falling below its slow average), and unit J is silenced. With
`--fast-units-read-slow`, the two hidden units that carry the default
(0 and 1; other units with `--fast-units`, e.g. all eight) read the slow
momentum's alignment instead of the fast one's: their weights on
`alignment_momentum_0p9` and its running average move onto `alignment_momentum_0p99` and its average
(`meta_runs/slow_timescale`). With `--horizon-neutral`, the controller's
weights on `progress` and `horizon_known` are zeroed: a known horizon
(`total_steps`, `TrainingHorizon()`) then changes nothing, and without one
the preset computes what SOURCE does. With `--anneal A P0 W` (implies
`--horizon-neutral`), the controller gains a hidden unit,
`relu(A * progress - A * P0 * horizon_known)` with output weight `-W`: zero
without a horizon and before progress P0, then pulling `change` down so
that the log step falls at up to `max_step_change` a step to the end
(`meta_runs/horizon`).

Usage: python make_preset.py SOURCE OUT NAME [--log-step-range LOW HIGH]
           [--max-step-change X] [--controller-bias B]
           [--slow-alignment-gain A
            | --brake G W B [--brake-loss-weight K] [--brake-fast-loss-weight F]
              [--brake-time-weight T]]
              [--brake-fast-alignment-weight H]
           [--units I J] [--fast-units-read-slow [--fast-units UNIT ...] [--slow-fraction X]]
           [--horizon-neutral | --anneal A P0 W] [--description TEXT]
"""

import argparse

import numpy as np

from keras_lopt import presets, savedmodel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("name")
    parser.add_argument("--log-step-range", nargs=2, type=float, metavar=("LOW", "HIGH"))
    parser.add_argument("--max-step-change", type=float)
    parser.add_argument("--controller-bias", type=float)
    parser.add_argument("--slow-alignment-gain", type=float)
    parser.add_argument("--brake", nargs=3, type=float, metavar=("G", "W", "B"))
    parser.add_argument("--brake-loss-weight", type=float, default=0.0, metavar="K")
    parser.add_argument("--brake-fast-loss-weight", type=float, default=0.0, metavar="F")
    parser.add_argument("--brake-time-weight", type=float, default=0.0, metavar="T")
    parser.add_argument("--brake-fast-alignment-weight", type=float, default=0.0, metavar="H")
    parser.add_argument("--units", nargs=2, type=int, default=(6, 7), metavar=("I", "J"))
    parser.add_argument("--fast-units-read-slow", action="store_true")
    parser.add_argument("--fast-units", nargs="+", type=int, default=(0, 1), metavar="UNIT")
    parser.add_argument("--slow-fraction", type=float, default=1.0, metavar="X")
    parser.add_argument("--horizon-neutral", action="store_true")
    parser.add_argument("--anneal", nargs=3, type=float, metavar=("A", "P0", "W"))
    parser.add_argument("--description")
    args = parser.parse_args()
    source = presets.load_preset(args.source)
    changes = {}
    if args.log_step_range is not None:
        changes["log_step_range"] = list(args.log_step_range)
    if args.max_step_change is not None:
        changes["max_step_change"] = args.max_step_change
    if args.brake is not None and args.slow_alignment_gain is not None:
        parser.error("give --slow-alignment-gain or the brake, not both")
    if args.anneal is not None:
        changes["controller_hidden_size"] = int(source.network.get_config()["controller_hidden_size"]) + 1
    weights_changed = (
        args.fast_units_read_slow
        or args.horizon_neutral
        or any(x is not None for x in (args.controller_bias, args.slow_alignment_gain, args.brake, args.anneal))
    )
    if not changes and not weights_changed:
        parser.error(
            "give at least one of --log-step-range, --max-step-change, --controller-bias, "
            "--slow-alignment-gain, --brake, --fast-units-read-slow, --horizon-neutral, --anneal"
        )
    network = type(source.network).from_config({**source.network.get_config(), "name": args.name, **changes})
    weights = [np.asarray(w, np.float32).copy() for w in source.weights]
    names = network.weight_names()
    kernel_0, bias_0, kernel_1 = (
        weights[names.index(n)] for n in ("controller_kernel_0", "controller_bias_0", "controller_kernel_1")
    )
    inputs = list(network.controller_input_names)
    if args.controller_bias is not None:
        index = names.index("controller_bias_1")
        changes["controller_bias_1"] = {"from": float(weights[index][0]), "to": args.controller_bias}
        weights[index][0] = args.controller_bias
    if args.slow_alignment_gain is not None:
        row = inputs.index("average_alignment_momentum_0p99")
        gain = args.slow_alignment_gain
        for unit, sign in zip(args.units, (1.0, -1.0)):
            kernel_0[:, unit] = 0.0
            kernel_0[row, unit] = sign
            bias_0[unit] = 0.0
            kernel_1[unit, 0] = sign * gain
        changes["slow_alignment_gain"] = {"gain": gain, "units": list(args.units)}
    if args.brake is not None:
        gain, log_step_weight, offset = args.brake
        brake, silent = args.units
        kernel_0[:, [brake, silent]] = 0.0
        kernel_0[inputs.index("average_alignment_momentum_0p99"), brake] = -gain
        kernel_0[inputs.index("log_step"), brake] = log_step_weight
        if args.brake_loss_weight:
            kernel_0[inputs.index("loss_change_vs_average_0p99"), brake] = args.brake_loss_weight
        if args.brake_fast_loss_weight:
            kernel_0[inputs.index("loss_change_vs_average_0p9"), brake] = args.brake_fast_loss_weight
        if args.brake_time_weight:
            kernel_0[inputs.index("step_tanh_1000"), brake] = args.brake_time_weight
        if args.brake_fast_alignment_weight:
            kernel_0[inputs.index("average_alignment_momentum_0p9"), brake] = args.brake_fast_alignment_weight
        bias_0[[brake, silent]] = [offset, 0.0]
        kernel_1[[brake, silent], 0] = [-1.0, 0.0]
        changes["brake"] = {
            "G": gain,
            "W": log_step_weight,
            "B": offset,
            "K": args.brake_loss_weight,
            "F": args.brake_fast_loss_weight,
            "T": args.brake_time_weight,
            "H": args.brake_fast_alignment_weight,
            "units": list(args.units),
        }
    if args.fast_units_read_slow:
        units = list(args.fast_units)
        for fast, slow in (
            ("alignment_momentum_0p9", "alignment_momentum_0p99"),
            ("average_alignment_momentum_0p9", "average_alignment_momentum_0p99"),
        ):
            moved = args.slow_fraction * kernel_0[inputs.index(fast), units]
            kernel_0[inputs.index(slow), units] += moved
            kernel_0[inputs.index(fast), units] -= moved
        changes["fast_units_read_slow"] = {"units": units, "fraction": args.slow_fraction}
    if args.horizon_neutral or args.anneal is not None:
        for feature in ("progress", "horizon_known"):
            kernel_0[inputs.index(feature), :] = 0.0
        changes["horizon_neutral"] = True
    if args.anneal is not None:
        gain, start, weight = args.anneal
        column = np.zeros([kernel_0.shape[0], 1], np.float32)
        column[inputs.index("progress"), 0] = gain
        column[inputs.index("horizon_known"), 0] = -gain * start
        grown = {
            "controller_kernel_0": np.concatenate([kernel_0, column], axis=1),
            "controller_bias_0": np.concatenate([bias_0, np.zeros([1], np.float32)]),
            "controller_kernel_1": np.concatenate([kernel_1, np.full([1, 1], -weight, np.float32)], axis=0),
        }
        for name, value in grown.items():
            weights[names.index(name)] = value
        changes["anneal"] = {"A": gain, "P0": start, "W": weight}
    method = "meta_runs/step_floor/make_preset.py: the source's weights, other controller " + (
        "settings" if weights_changed else "bounds"
    )
    network.set_weights(weights)
    info = savedmodel.PresetInfo(
        name=args.name,
        description=args.description or f"{source.name} with {changes}",
        feature_set=source.feature_set,
        learning_rate=source.learning_rate,
        fan_in_base=source.fan_in_base,
        provenance={
            "method": method,
            "from": source.name,
            **changes,
            "source_provenance": source.metadata["provenance"],
        },
    )
    savedmodel.export(network, args.out, info)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
