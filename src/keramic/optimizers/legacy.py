"""`keras.optimizers.legacy`: Keras 3 keeps these names only to say they are gone; so does keramic.

The stubs stay out of the registry so a saved config naming `Adam` never resolves to one.
"""

_MESSAGE = (
    "`keras.optimizers.legacy` is not supported in Keras 3. When using `tf.keras`, to continue using a "
    "`tf.keras.optimizers.legacy` optimizer, you can install the `tf_keras` package (Keras 2) and set the "
    "environment variable `TF_USE_LEGACY_KERAS=True` to configure TensorFlow to use `tf_keras` when accessing "
    "`tf.keras`."
)


class _Unsupported:
    def __init__(self, *args, **kwargs):
        raise ImportError(_MESSAGE)


class Optimizer(_Unsupported):
    pass


class Adagrad(_Unsupported):
    pass


class Adam(_Unsupported):
    pass


class Ftrl(_Unsupported):
    pass


class RMSprop(_Unsupported):
    pass


class SGD(_Unsupported):
    pass
