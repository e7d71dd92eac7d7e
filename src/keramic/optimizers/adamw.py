"""AdamW: Adam with decoupled weight decay that must be set (default 0.004)."""

from keramic.optimizers.adam import Adam
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class AdamW(Adam):
    """Adam plus `var *= 1 - weight_decay*lr` before each update. Further arguments as
    `Optimizer`, in Keras's positional order (`weight_decay` comes second here)."""

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        *args,
        **kwargs,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, *args, **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
