"""A preset with the same weights as SOURCE but another `log_step_range`.

The adaptive controller keeps a per-tensor log step `s` in
`[low, high]` and the step is `learning_rate * direction * exp(s)`; raising
`low` puts a floor under the step it can shrink to, without touching the
weights. Used to test, on the selection suite, whether the default's
shrinking to its lowest step on plateaus (0.1 x its rate: gru_copy,
mlp_adding_w64) is what loses to Adam(1e-3).

Usage: python make_preset.py SOURCE OUT NAME LOW HIGH [DESCRIPTION]
"""

import sys

from keras_lopt import presets, savedmodel


def main(source_path, out, name, low, high, description=None):
    source = presets.load_preset(source_path)
    config = {**source.network.get_config(), "name": name, "log_step_range": [low, high]}
    network = type(source.network).from_config(config)
    network.set_weights([w for w in source.weights])
    info = savedmodel.PresetInfo(
        name=name,
        description=description or f"{source.name} with log_step_range [{low}, {high}]",
        feature_set=source.feature_set,
        learning_rate=source.learning_rate,
        fan_in_base=source.fan_in_base,
        provenance={
            "method": "meta_runs/step_floor/make_preset.py: the source's weights, another log_step_range",
            "from": source.name,
            "log_step_range": [low, high],
            "source_provenance": source.metadata["provenance"],
        },
    )
    savedmodel.export(network, out, info)
    print(f"saved {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4], float(sys.argv[4]), float(sys.argv[5]), *sys.argv[6:7])
