"""`Layer.stateless_call`: run a layer's `call` on given variable values, leaving its variables
untouched, and hand back the new non-trainable values (and, on request, the losses).

Keras code written for functional training loops (the keras-io RLHF demo, the custom-loop guides)
differentiates a model through `stateless_call` with respect to values it passes in. keramic runs it
inside a `keras.StatelessScope`, whose variable reads resolve to those values, so torch autograd
follows them as it would follow the variables.
"""

from keramic.stateless_scope import StatelessScope


def stateless_call(layer, trainable_variables, non_trainable_variables, *args, return_losses: bool = False, **kwargs):
    """`layer.call(*args, **kwargs)` with the layer's trainable and non-trainable variables read
    from the given values (in `layer.trainable_variables` / `non_trainable_variables` order).

    Returns `(outputs, non_trainable_values)`, plus the losses added during the call and the
    weight-regularization penalties of those values when `return_losses=True` (not the layer's own
    activity penalty, as in Keras). The layer's own variables and `losses` are unchanged.
    """
    name = type(layer).__name__
    if not layer.built:
        raise ValueError(
            f"To call stateless_call, {name} must be built (i.e. its variables must have been already "
            "created). You can build it by calling it on some data."
        )
    trainable, non_trainable = layer.trainable_variables, layer.non_trainable_variables
    for argument, given, own in (
        ("trainable_variables", trainable_variables, trainable),
        ("non_trainable_variables", non_trainable_variables, non_trainable),
    ):
        if len(given) != len(own):
            raise ValueError(
                f"Argument `{argument}` must be a list of tensors corresponding 1:1 to {name}().{argument}. "
                f"Received list with length {len(given)}, but expected {len(own)} variables."
            )
    mapping = list(zip(trainable, trainable_variables)) + list(zip(non_trainable, non_trainable_variables))
    sublayers = list(layer._flatten_layers())
    kept_losses = [list(sublayer._call_losses) for sublayer in sublayers]
    # Keras runs `call` itself; keramic goes through `__call__` so that an explicit `training=`
    # reaches the sublayers of Sequential and Functional models (their `call` reads it from the
    # call context), minus the activity penalty that `call` alone would not add.
    activity_regularizer = layer.activity_regularizer
    layer.activity_regularizer = None
    try:
        with StatelessScope(mapping, collect_losses=return_losses) as scope:
            outputs = layer(*args, **kwargs)
            if return_losses:
                losses = list(scope.losses) + _regularization_penalties(sublayers)
    finally:
        layer.activity_regularizer = activity_regularizer
    for sublayer, kept in zip(sublayers, kept_losses):  # the call's losses belong to the scope only
        sublayer._call_losses[:] = kept
    new_non_trainable = [scope.get_current_value(variable) for variable in non_trainable]
    if return_losses:
        return outputs, new_non_trainable, losses
    return outputs, new_non_trainable


def _regularization_penalties(layers) -> list:
    """Each trainable variable's regularizer applied to its current (scope) value."""
    penalties = []
    for layer in layers:
        for variable in layer._own_trainable + layer._own_non_trainable:
            regularizer = getattr(variable, "regularizer", None)
            if regularizer is not None and variable.trainable:
                penalties.append(regularizer(variable))
    return penalties
