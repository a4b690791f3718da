"""The network a meta-training run trains, and its starting meta-weights."""

import dataclasses

import keras
import numpy as np

from keras_lopt import features, presets
from keras_lopt.layers import ADAPTIVE_KINDS, ARCHITECTURES, AdaptiveLossMLPNetwork, MLPNetwork
from keras_lopt.meta import unroll

__all__ = ["build_network", "initial_theta", "trainable_mask"]


def build_network(config):
    """The network a `MetaTrainConfig` describes (randomly initialised): an
    `MLPNetwork`, `AdaptiveMLPNetwork`, `AdaptiveLossMLPNetwork`,
    `FFNLSTMNetwork` or `HyperLSTMNetwork`."""
    network = config.network
    num_features = len(features.feature_names(network.feature_set))
    if network.architecture in ADAPTIVE_KINDS:
        kwargs = {}
        if network.controller_hidden_size is not None:
            kwargs["controller_hidden_size"] = network.controller_hidden_size
        if network.log_step_range is not None:
            kwargs["log_step_range"] = network.log_step_range
        if network.odd_direction:
            kwargs["odd_direction"] = True
        return ARCHITECTURES[network.architecture](
            num_features=num_features,
            hidden_sizes=network.hidden_sizes,
            activation=network.activation,
            name=config.name,
            **kwargs,
        )
    kwargs = {}
    if network.architecture != MLPNetwork.kind:
        kwargs["num_context_features"] = features.NUM_CONTEXT_FEATURES
        if network.lstm_hidden_size is not None:
            kwargs["lstm_hidden_size"] = network.lstm_hidden_size
        if network.bank_size is not None:
            kwargs["bank_size"] = network.bank_size
    return ARCHITECTURES[network.architecture](
        num_features=num_features,
        hidden_sizes=network.hidden_sizes,
        activation=network.activation,
        magnitude_scale=network.magnitude_scale,
        max_log_multiplier=network.max_log_multiplier,
        name=config.name,
        **kwargs,
    )


def _with_feature_set(loaded, feature_set, preset_name):
    """`loaded` (a `LoadedPreset`), its MLP made to read `feature_set`.

    A preset that reads more features than the run's starts it with the
    rows of its first layer for the run's features, the others dropped: the
    rule computes what it computed with those features set to zero. The
    reverse (new features) and recurrent presets are refused.
    """
    names = features.feature_names(feature_set)
    if loaded.feature_names == names:
        return loaded
    if loaded.network.kind != MLPNetwork.kind or not set(names) <= set(loaded.feature_names):
        raise ValueError(
            f"`init_preset` {preset_name!r} reads the features "
            f"{list(loaded.feature_names)} and cannot start a network with the "
            f"feature set {feature_set!r}: only an 'mlp' preset whose features "
            f"include all of {list(names)} can."
        )
    rows = [loaded.feature_names.index(n) for n in names]
    source = loaded.network
    network = MLPNetwork(
        num_features=len(names),
        hidden_sizes=source.hidden_sizes,
        activation=source.activation,
        magnitude_scale=source.magnitude_scale,
        max_log_multiplier=source.max_log_multiplier,
        name=source.name,
    )
    weights = [np.asarray(loaded.weights[0])[rows], *loaded.weights[1:]]
    network.set_weights(weights)
    metadata = {**loaded.metadata, "feature_names": list(names)}
    return dataclasses.replace(loaded, metadata=metadata, network=network, weights=tuple(weights))


def initial_theta(config, layer) -> np.ndarray:
    """The meta-weights `[D]` a run of `config` starts from, for `layer`
    (`build_network(config)`): `config.init_preset`'s, or a seeded random start."""
    if config.init_preset is None:
        keras.utils.set_random_seed(config.seed)
        return unroll.flatten_weights(build_network(config).get_weights())
    loaded = _with_feature_set(presets.load_preset(config.init_preset), config.network.feature_set, config.init_preset)
    convert = None
    if loaded.network.kind == MLPNetwork.kind and layer.kind != MLPNetwork.kind:
        # An LSTM architecture starts from an MLP preset's rule (e.g.
        # Adam): its per-parameter MLP takes the preset's weights, the
        # LSTM a seeded random start that does not change the output.
        keras.utils.set_random_seed(config.seed)
        convert = build_network(config).weights_from_mlp
    elif layer.kind == AdaptiveLossMLPNetwork.kind and loaded.network.kind != layer.kind:
        # A controller that reads the loss starts from one that does not,
        # the loss inputs weighted 0: the same rule at the start.
        convert = layer.weights_from_adaptive
    if convert is not None:
        try:
            weights = convert(loaded.network, loaded.weights)
        except ValueError as e:
            raise ValueError(
                f"`init_preset` {config.init_preset!r} cannot start a {layer.kind!r} network: {e}"
            ) from None
        return unroll.flatten_weights(weights)
    shapes = unroll.weight_shapes(layer)
    got = unroll.weight_shapes(loaded.network)
    if got != shapes or loaded.network.activation != layer.activation or loaded.network.kind != layer.kind:
        raise ValueError(
            f"`init_preset` {config.init_preset!r} has a different "
            f"architecture. Expected a {layer.kind!r} network with "
            f"weight shapes {shapes} and activation="
            f"{layer.activation!r}. Received: a "
            f"{loaded.network.kind!r} network with {got} and "
            f"activation={loaded.network.activation!r}"
        )
    return unroll.flatten_weights(loaded.weights)


def trainable_mask(layer, frozen_weights) -> np.ndarray:
    """`[D]` float32, 0 over the flat meta-weights of the weights named in
    `frozen_weights` (`MetaTrainConfig.frozen_weights`), 1 elsewhere."""
    names = layer.weight_names()
    unknown = [n for n in frozen_weights if n not in names]
    if unknown:
        raise ValueError(
            f"`frozen_weights` names weights the {layer.kind!r} network does not have: {unknown}. Its weights: {names}"
        )
    parts = [
        np.full(int(np.prod(shape)), 0.0 if name in frozen_weights else 1.0, np.float32)
        for name, shape in zip(names, unroll.weight_shapes(layer))
    ]
    return np.concatenate(parts)
