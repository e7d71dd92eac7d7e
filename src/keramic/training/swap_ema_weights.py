"""`keras.callbacks.SwapEMAWeights`: evaluate and predict with the optimizer's exponential moving
average of the weights (`use_ema=True`), then put the trained weights back.

>>> model.compile(optimizer=keramic.optimizers.SGD(use_ema=True), loss="mse")
>>> model.fit(x, y, validation_data=(xv, yv), callbacks=[SwapEMAWeights()])
"""

import torch

from keramic.serialization.registry import keras_export
from keramic.training.callbacks import Callback


@keras_export("keras.callbacks")
class SwapEMAWeights(Callback):
    """Swap the EMA weights in for evaluation and prediction; with `swap_on_epoch`, also at each
    epoch end (for callbacks that follow, e.g. checkpoints), keeping the EMA after the last epoch."""

    def __init__(self, swap_on_epoch=False):
        super().__init__()
        self.swap_on_epoch = swap_on_epoch
        self._ema_weights_in_model = False

    def _ema_optimizers(self):
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if hasattr(optimizer, "optimizers"):
            chosen = [opt for opt in optimizer.optimizers if getattr(opt, "use_ema", False)]
            if not chosen:
                raise ValueError(
                    "SwapEMAWeights needs at least one inner optimizer with `use_ema=True`; every optimizer "
                    "of this MultiOptimizer has use_ema=False."
                )
        else:
            chosen = [optimizer]
        for opt in chosen:
            if not getattr(opt, "use_ema", False) or getattr(opt, "_ema_averages", None) is None:
                raise ValueError(
                    "SwapEMAWeights must be used with an optimizer built with `use_ema=True`; "
                    f"got use_ema={getattr(opt, 'use_ema', None)}."
                )
        return chosen

    @torch.no_grad()
    def _swap_variables(self):
        for optimizer in self._ema_optimizers():
            for variable, average in zip(optimizer._trainable_variables, optimizer._ema_averages):
                kept = variable.detach().clone()
                variable.copy_(average)
                average.copy_(kept)

    @torch.no_grad()
    def _finalize_ema_values(self):
        for optimizer in self._ema_optimizers():
            for variable, average in zip(optimizer._trainable_variables, optimizer._ema_averages):
                average.copy_(variable)

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch and self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch and not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True
            if epoch == self.params["epochs"] - 1:
                self._finalize_ema_values()

    def on_test_begin(self, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    def on_test_end(self, logs=None):
        if self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False

    def on_predict_begin(self, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    def on_predict_end(self, logs=None):
        # Kept as Keras 3.15 has it: after predict the EMA weights stay in (its test is on `not`).
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False
