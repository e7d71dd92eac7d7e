"""`keras.utils.PyDataset` (and its old name `Sequence`): batches by index for `fit`.

Subclasses define `__len__` (batches per epoch) and `__getitem__(index)` (one batch), and may
override `on_epoch_end`. `fit` iterates it like any iterable of batches.
"""

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

    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index).")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__().")

    @property
    def num_batches(self):
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
