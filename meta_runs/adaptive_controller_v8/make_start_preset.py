"""The start of adaptive_controller_v8: adaptive_controller_v6's step-125
preset with one controller unit made to shrink the step while the training
loss rises above its fast running average.

The unit is the one whose output weight (`controller_kernel_1`) is most
negative: its input weight from `loss_change_vs_average_0p9` grows by
`gain / |output weight|`, so while the unit is active a loss 10% above its
average lowers the controller's output by about `gain * tanh(0.1)`.

Usage: python make_start_preset.py V6_STEP125_PRESET OUT GAIN  (v8: GAIN 2.0)
"""

import sys

import numpy as np

from keras_lopt import presets, savedmodel
from keras_lopt.layers import AdaptiveLossMLPNetwork
from keras_lopt.layers.adaptive_mlp import LOSS_CONTROLLER_INPUT_NAMES


def main(source_path, out, gain):
    source = presets.load_preset(source_path)
    if source.network.kind != AdaptiveLossMLPNetwork.kind:
        raise ValueError(f"Expected an {AdaptiveLossMLPNetwork.kind!r} preset. Received: {source.network.kind!r}")
    network = AdaptiveLossMLPNetwork.from_config({**source.network.get_config(), "name": "handloss"})
    weights = [np.array(w) for w in source.weights]
    names = network.weight_names()
    kernel_0, kernel_1 = names.index("controller_kernel_0"), names.index("controller_kernel_1")
    unit = int(np.argmin(weights[kernel_1][:, 0]))
    row = LOSS_CONTROLLER_INPUT_NAMES.index("loss_change_vs_average_0p9")
    weights[kernel_0][row, unit] += gain / abs(weights[kernel_1][unit, 0])
    network.set_weights(weights)
    info = savedmodel.PresetInfo(
        name="handloss",
        description=f"{source.name} with a loss-rise shrink (gain {gain})",
        feature_set="local",
        learning_rate=source.learning_rate,
        provenance={"from": source_path, "loss_gain": gain, "unit": unit},
    )
    savedmodel.export(network, out, info)
    print(f"unit {unit}; saved {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
