"""A network architecture paired with an explicit list of weights."""


class BoundNetwork:
    """Callable `columns -> (direction, magnitude)` for `rule.step`.

    Pairs an architecture layer (for its `forward` math and constants) with
    weights held elsewhere: the optimizer's variables, or perturbed
    meta-weights during meta-training.

    Args:
        layer: a learned-optimizer network layer, e.g. `MLPNetwork`.
        weights: list of float32 tensors shaped like `layer.weights`.
    """

    def __init__(self, layer, weights):
        self.layer = layer
        self.weights = list(weights)
        self.magnitude_scale = layer.magnitude_scale

    def __call__(self, columns):
        return self.layer.forward(self.weights, columns)
