"""A preset with the same weights as SOURCE but other controller bounds.

The adaptive controller keeps a per-tensor log step `s` in
`log_step_range` and moves it by at most `max_step_change` a step; the step
is `learning_rate * direction * exp(s)`. Raising the low end puts a floor
under the step it can shrink to, without touching the weights. Used to
test, on the selection suite, whether the default's shrinking to its lowest
step on plateaus (0.1 x its rate: gru_copy, mlp_adding_w64) is what loses
to Adam(1e-3).

Usage: python make_preset.py SOURCE OUT NAME --log-step-range LOW HIGH
           [--max-step-change X] [--description TEXT]
"""

import argparse

from keras_lopt import presets, savedmodel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("name")
    parser.add_argument("--log-step-range", nargs=2, type=float, required=True, metavar=("LOW", "HIGH"))
    parser.add_argument("--max-step-change", type=float)
    parser.add_argument("--description")
    args = parser.parse_args()
    source = presets.load_preset(args.source)
    changes = {"log_step_range": list(args.log_step_range)}
    if args.max_step_change is not None:
        changes["max_step_change"] = args.max_step_change
    network = type(source.network).from_config({**source.network.get_config(), "name": args.name, **changes})
    network.set_weights(list(source.weights))
    info = savedmodel.PresetInfo(
        name=args.name,
        description=args.description or f"{source.name} with {changes}",
        feature_set=source.feature_set,
        learning_rate=source.learning_rate,
        fan_in_base=source.fan_in_base,
        provenance={
            "method": "meta_runs/step_floor/make_preset.py: the source's weights, other controller bounds",
            "from": source.name,
            **changes,
            "source_provenance": source.metadata["provenance"],
        },
    )
    savedmodel.export(network, args.out, info)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
