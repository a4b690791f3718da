"""adaptive_slow_v3 with its direction MLP's dead hidden units zeroed.

Six of the default's eight direction units have output weight 0; their
input weights are leftovers (about 0.5, also on the tensor features, e.g.
log10 of the tensor size). They compute nothing, but once meta-training
moves their output weights they add a gradient-independent drift to every
parameter (`meta_runs/adaptive_direction_v1`, `v2`). Zeroing their inputs
leaves the rule unchanged (the same update, bit for bit) and makes every
direction unit zero at zero features.

Usage: python meta_runs/adaptive_direction_v3/make_init.py OUT
"""

import sys

import numpy as np

from keras_lopt import presets, savedmodel


def main(out):
    source = presets.load_preset("adaptive_slow_v3")
    names = source.network.weight_names()
    weights = [np.array(w) for w in source.weights]
    kernel_0, kernel_1 = weights[names.index("kernel_0")], weights[names.index("kernel_1")]
    dead = np.flatnonzero(kernel_1[:, 0] == 0.0)
    kernel_0[:, dead] = 0.0
    network = type(source.network).from_config({**source.network.get_config(), "name": "adaptive_direction_v3_init"})
    network.set_weights(weights)
    info = savedmodel.PresetInfo(
        name="adaptive_direction_v3_init",
        description="adaptive_slow_v3 with the input weights of its dead direction units (output weight 0) zeroed",
        feature_set=source.feature_set,
        learning_rate=source.learning_rate,
        fan_in_base=source.fan_in_base,
        provenance={
            "method": "meta_runs/adaptive_direction_v3/make_init.py",
            "from": source.name,
            "zeroed_units": dead.tolist(),
            "source_provenance": source.metadata["provenance"],
        },
    )
    savedmodel.export(network, out, info)
    print(f"saved {out}: units {dead.tolist()} zeroed")


if __name__ == "__main__":
    main(sys.argv[1])
