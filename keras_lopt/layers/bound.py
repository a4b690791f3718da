"""A network architecture paired with an explicit list of weights."""


class BoundNetwork:
    """Callable `columns -> (direction, magnitude)` for `rule.step`.

    For networks with per-tensor state (non-empty `state_names`) the call is
    `(columns, context, state) -> (direction, magnitude, new_state)`.

    Pairs an architecture layer (for its `forward` math and constants) with
    weights held elsewhere: the optimizer's variables, or perturbed
    meta-weights during meta-training.

    Args:
        layer: a learned-optimizer network layer, e.g. `MLPNetwork`.
        weights: list of float32 tensors shaped like `layer.weights`.
        zeros: None, or `layer.exact_zeros(values)` where the weights are
            known to hold `values` (the optimizer's fixed preset weights):
            the per-element terms of exactly zero weights are left out.
    """

    def __init__(self, layer, weights, zeros=None):
        self.layer = layer
        self.weights = list(weights)
        self.zeros = zeros
        self.magnitude_scale = layer.magnitude_scale
        self.state_names = layer.state_names
        self.state_shapes = layer.state_shapes
        self.reads_loss = layer.reads_loss
        self.context_feature_names = getattr(layer, "context_feature_names", ())
        self._direction_split = None

    def __call__(self, *inputs):
        if self.zeros is None:
            return self.layer.forward(self.weights, *inputs)
        return self.layer.forward(self.weights, *inputs, zeros=self.zeros)

    @property
    def batches_control(self):
        """Whether the layer steps a batch of tensors' per-tensor state in
        one call (`control` and `direction`; see `rule.step_many`)."""
        return hasattr(self.layer, "control")

    def control(self, context, state):
        """`layer.control`: `(context [V, C], state [V, S]) ->
        (magnitude [V], new_state [V, S])`."""
        return self.layer.control(self.weights, context, state)

    def direction(self, columns):
        """`layer.direction`: the per-element direction of one tensor. The
        weights are split into scalars once per `BoundNetwork`, for all the
        tensors it steps (`rule.step_many_with_moments`)."""
        if self._direction_split is None:
            self._direction_split = self.layer.split_direction(self.weights)
        return self.layer.direction(self.weights, columns, self.zeros, self._direction_split)
