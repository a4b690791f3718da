"""A preset with SOURCE's weights but another controller output bias.

The adaptive controller moves each tensor's log step by
`max_step_change * tanh(change)`, `change = hidden @ controller_kernel_1 +
controller_bias_1`. The default's bias is +0.51: with its hidden units
quiet the step grows by ~0.023 a step, which is what the default does on
noisy plateaus (BENCHMARKS, "A selection task where gradients stay
noisy"). This probes, on selection tasks, whether another bias alone
changes that without losing elsewhere.

Usage: python make_preset.py SOURCE OUT NAME --bias B
"""

import argparse

import numpy as np

from keras_lopt import presets, savedmodel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("name")
    parser.add_argument("--bias", type=float, required=True)
    args = parser.parse_args()
    source = presets.load_preset(args.source)
    names = source.network.weight_names()
    weights = [np.asarray(w, np.float32).copy() for w in source.weights]
    index = names.index("controller_bias_1")
    old = float(weights[index][0])
    weights[index][0] = args.bias
    network = type(source.network).from_config({**source.network.get_config(), "name": args.name})
    network.set_weights(weights)
    info = savedmodel.PresetInfo(
        name=args.name,
        description=f"{source.name} with controller_bias_1 {old:.3f} -> {args.bias}",
        feature_set=source.feature_set,
        learning_rate=source.learning_rate,
        fan_in_base=source.fan_in_base,
        provenance={
            "method": "meta_runs/growth_bias/make_preset.py: the source's weights, another controller output bias",
            "from": source.name,
            "controller_bias_1": args.bias,
            "source_provenance": source.metadata["provenance"],
        },
    )
    savedmodel.export(network, args.out, info)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
