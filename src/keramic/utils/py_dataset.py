"""`keras.utils.PyDataset` (and its old name `Sequence`): batches by index for `fit`.

Subclasses define `__len__` (batches per epoch) and `__getitem__(index)` (one batch), and may
override `on_epoch_end`. `fit` iterates it like any iterable of batches.
"""

import warnings

from keramic.serialization.registry import keras_export


@keras_export("keras.utils")
class PyDataset:
    """Base class of indexable datasets of batches.

    >>> class Batches(keramic.utils.PyDataset):
    ...     def __len__(self): return 10
    ...     def __getitem__(self, i): return x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    def _settings(self):
        """As Keras: a subclass whose constructor skipped `super().__init__()` is warned (once, as
        `fit` first reads it) and gets the default settings."""
        if "_workers" not in self.__dict__:
            warnings.warn(
                "Your `PyDataset` class should call `super().__init__(**kwargs)` in its constructor. `**kwargs` "
                "can include `workers`, `use_multiprocessing`, `max_queue_size`. Do not pass these arguments to "
                "`fit()`, as they will be ignored.",
                stacklevel=3,
            )
            PyDataset.__init__(self)
        return self

    @property
    def workers(self):
        return self._settings()._workers

    @property
    def use_multiprocessing(self):
        return self._settings()._use_multiprocessing

    @property
    def max_queue_size(self):
        return self._settings()._max_queue_size

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index).")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__().")

    @property
    def num_batches(self):
        self._settings()
        try:
            return len(self)
        except NotImplementedError:
            return None

    def on_epoch_begin(self):
        """Called before each epoch."""

    def on_epoch_end(self):
        """Called after each epoch (shuffle here)."""

    def __iter__(self):
        """One epoch of batches, then `on_epoch_end()`."""
        self.on_epoch_begin()
        for index in range(len(self)):
            yield self[index]
        self.on_epoch_end()


Sequence = PyDataset
