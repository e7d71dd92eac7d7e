"""Turn what users pass to fit/evaluate/predict into batches of tensors on the model's device.

Whole arrays stay where they are (numpy arrays become CPU tensors without a copy); each batch is
sliced there and then sent to the model's device, so a large dataset never has to fit on the GPU.
"""

import collections.abc
import itertools
import math
import random
import types
import warnings
from typing import Any

import numpy as np
import torch

from keramic import backend
from keramic.distribution import steps as distributed
from keramic.layers.preprocessing import strings
from keramic.symbolic import flatten, map_structure
from keramic.utils.py_dataset import PyDataset


def _as_tensor(array):
    """A tensor where the data already is: numpy shares memory; float64 becomes floatx as in Keras."""
    if array is None or isinstance(array, torch.Tensor):
        return array
    array = np.asarray(array)
    if array.dtype.kind in "US" or (array.dtype == object and array.size and isinstance(array.flat[0], (str, bytes))):
        return strings.as_array(array)  # torch has no strings: string inputs are batched as numpy arrays
    if array.dtype == object:
        raise TypeError(f"Cannot convert an object array to a tensor: {array!r}")
    if not array.flags.writeable:  # a view of a tf.Tensor's buffer: torch needs its own copy
        array = array.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(array)) if array.ndim else torch.tensor(array)
    return tensor.to(backend.torch_dtype(backend.floatx())) if tensor.dtype == torch.float64 else tensor


def to_tensors(data, device=None):
    """Arrays (nested in lists/dicts) -> tensors, left in place or sent to `device`."""
    if data is None:
        return None
    tensors = map_structure(_as_tensor, data)
    return tensors if device is None else to_device(tensors, device)


def to_device(data, device):
    """Send every tensor of a structure to `device` (no-op for those already there)."""
    if data is None:
        return None
    if isinstance(data, torch.Tensor):
        return data if data.device == device else data.to(device, non_blocking=True)
    return map_structure(lambda t: t if not isinstance(t, torch.Tensor) or t.device == device else t.to(device, non_blocking=True), data)


def num_samples(*structures):
    counts = {int(leaf.shape[0]) for s in structures if s is not None for leaf in flatten(s) if leaf is not None}
    if len(counts) > 1:
        raise ValueError(f"Inputs, targets and sample weights must have the same number of samples; got sizes {sorted(counts)}.")
    if not counts:
        raise ValueError("No data was given.")
    return counts.pop()


def take(data, index):
    """Rows `index` (a slice or an index tensor) of every array in a structure."""
    if data is None:
        return None
    if isinstance(data, torch.Tensor):
        return data[index]
    return map_structure(lambda a: a if a is None else a[_index_for(a, index)], data)


def _index_for(array, index):
    """A shuffled index tensor as numpy for numpy (string) arrays."""
    return index.cpu().numpy() if isinstance(array, np.ndarray) and isinstance(index, torch.Tensor) else index


def split_validation(x, y, sample_weight, fraction):
    """Keras's `validation_split`: the last `fraction` of the samples, taken before shuffling."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split must be in (0, 1); got {fraction}.")
    count = num_samples(x, y, sample_weight)
    split_at = int(math.floor(count * (1.0 - fraction)))
    if split_at in (0, count):
        raise ValueError(f"validation_split={fraction} leaves no samples for training or validation ({count} samples).")
    head, tail = slice(0, split_at), slice(split_at, None)
    return (take(x, head), take(y, head), take(sample_weight, head)), (take(x, tail), take(y, tail), take(sample_weight, tail))


def unpack(data):
    """(x,), (x, y) or (x, y, sample_weight) -> a 3-tuple."""
    if isinstance(data, (list, tuple)):
        if len(data) == 1:
            return data[0], None, None
        if len(data) == 2:
            return data[0], data[1], None
        if len(data) == 3:
            return tuple(data)
    return data, None, None


def class_weights_to_sample_weights(y, class_weight):
    """Per-sample weights from `{class index: weight}` (sparse or one-hot targets)."""
    if isinstance(y, (list, tuple, dict)):
        raise ValueError("class_weight is only supported for models with a single output.")
    labels = y
    if labels.dim() > 1 and labels.shape[-1] > 1:
        labels = labels.argmax(dim=-1)
    labels = labels.reshape(labels.shape[0], -1)[:, 0].long()
    size = max(int(labels.max()) + 1, max(class_weight) + 1)
    table = torch.ones(size, dtype=torch.float32, device=labels.device)
    for index, weight in class_weight.items():
        table[int(index)] = float(weight)
    return table[labels]


def _open_loader_draw():
    """The draw Keras's torch data path makes each time it opens a DataLoader iterator over
    arrays: one int64 from torch's global (CPU) generator, the loader's worker base seed."""
    torch.empty((), dtype=torch.int64).random_()


def _epoch_permutation(size):
    """A shuffled order as Keras's torch path gets it: a fresh generator seeded with one int64
    drawn from torch's global generator, then one permutation from that generator."""
    generator = torch.Generator()
    generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
    return torch.randperm(size, generator=generator)


class ArrayBatches:
    """Batches over in-memory tensors, in Keras's order and with its draws from torch's global generator.

    As Keras on torch, an epoch opens a pass over the data (one draw), `shuffle=True` draws the
    epoch's permutation when the first batch is read (one draw seeding its own generator),
    `shuffle="batch"` permutes each batch within itself as it is read (one `randperm` each), and
    the end of an epoch opens the next pass (one draw), which Keras never reads. So unseeded
    random layers see the generator where Keras leaves it. The order is computed once per epoch.
    """

    def __init__(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False, device=None):
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.size = num_samples(x, y, sample_weight)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.device = device

    @property
    def steps(self):
        return math.ceil(self.size / self.batch_size)

    def __iter__(self):
        _open_loader_draw()
        return self._epoch()

    def _epoch(self):
        yield from self._pass()
        _open_loader_draw()  # only reached when the whole epoch was read (not after a `break`)

    def open_pass(self):
        """A pass over the data, opened now (its draw now, its order at its first batch)."""
        _open_loader_draw()
        return self._pass()

    def first_batch_draws(self):
        """The draws Keras makes when it reads a first batch to build the model, its compiled
        loss and metrics before the first `fit` / `evaluate` after `compile`."""
        _open_loader_draw()
        if self.shuffle == "batch":
            torch.randperm(min(self.batch_size, self.size), device="cpu")
        elif self.shuffle:
            _epoch_permutation(self.size)

    def _pass(self):
        leaves = [leaf for part in (self.x, self.y, self.sample_weight) if part is not None for leaf in flatten(part)]
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        in_batch = self.shuffle == "batch"
        order = _epoch_permutation(self.size) if self.shuffle and not in_batch else None
        order = distributed.shared_order(order)
        if order is not None and tensors and order.device != tensors[0].device:
            order = order.to(tensors[0].device)
        device = self.device
        if all(not isinstance(leaf, torch.Tensor) or leaf.device == device for leaf in leaves):
            device = None  # the data already lives on the model's device
        for start in range(0, self.size, self.batch_size):
            stop = min(start + self.batch_size, self.size)
            part = distributed.batch_part(stop - start)  # this process's rows of the global batch
            if in_batch:
                index = distributed.shared_order(torch.randperm(stop - start, device="cpu")) + start
                index = index if part is None else index[part]
                index = index.to(tensors[0].device) if tensors and tensors[0].device != index.device else index
            else:
                if part is not None:
                    start, stop = start + part.start, start + part.stop
                index = slice(start, stop) if order is None else order[start:stop]
            batch = take(self.x, index), take(self.y, index), take(self.sample_weight, index)
            yield batch if device is None else tuple(to_device(part, device) for part in batch)


class StepBatch(tuple):
    """An `(x, y, sample_weight)` batch read from an iterable source, which also carries the batch
    as Keras on torch hands it to a custom `train_step` / `test_step` (`step_data`): the element as
    yielded, with every tuple in it turned into a list (`(x, y)` comes as `[x, y]`, `(x,)` as `[x]`)."""

    step_data: Any

    def __new__(cls, x, y, sample_weight, arity: int):
        batch = super().__new__(cls, (x, y, sample_weight))
        if not arity:
            batch.step_data = x
        else:
            count = 3 if sample_weight is not None else arity  # class weights add the third part
            batch.step_data = [_tuples_as_lists(part) for part in (x, y, sample_weight)[:count]]
        return batch


def _tuples_as_lists(structure):
    if isinstance(structure, (list, tuple)):
        return [_tuples_as_lists(item) for item in structure]
    if isinstance(structure, dict):
        return {key: _tuples_as_lists(value) for key, value in structure.items()}
    return structure


class IterableBatches:
    """Batches from a generator, a torch DataLoader or any iterable of (x, y[, w]) tuples."""

    def __init__(self, iterable, steps=None, device=None, class_weight=None):
        self.iterable = iterable
        self.device = device
        self.class_weight = class_weight  # `fit(class_weight=...)`: each batch's targets give its sample weights
        self.steps = steps if steps is not None else _known_length(iterable)
        self._steps_given = steps is not None
        self._opened = False

    def first_batch_draws(self):
        """Keras's build from a first batch opens the data as a torch DataLoader and reads one
        batch: the loader's draws from torch's global generator (a user's loader makes its own)."""
        if isinstance(self.iterable, torch.utils.data.DataLoader):
            next(iter(self.iterable), None)
            return
        _open_loader_draw()
        if not isinstance(self.iterable, collections.abc.Iterator):
            # A dataset read again each pass: that read opens a pass of its own (a tf.data shuffle
            # moves on to its next order, a shuffled PyDataset draws an order); a generator keeps its batch.
            next(iter(self.iterable), None)

    def __iter__(self):
        if not self._steps_given and not isinstance(self.iterable, collections.abc.Iterator):
            # As Keras, a pass counts the batches the data has as it starts (a PyDataset may change
            # its length, as one that shrinks its batch size for a last, short batch).
            self.steps = _known_length(self.iterable)
        iterator = iter(self.iterable)
        # As Keras on torch, each pass runs through a DataLoader, whose opening draws once (a user's
        # loader draws by itself); a generator is one pass that epochs go on reading.
        if not isinstance(self.iterable, torch.utils.data.DataLoader) and not (iterator is self.iterable and self._opened):
            _open_loader_draw()
        self._opened = True
        if iterator is self.iterable:  # a generator: draw no batch past `steps` (as Keras, the next epoch trains on it)
            iterator = itertools.islice(iterator, self.steps)
        for step, batch in enumerate(iterator):
            if self.steps is not None and step >= self.steps:
                break
            # As Keras, a PyDataset's lone `x` (not a tuple) reaches a custom step as `[x]`.
            arity = len(batch) if isinstance(batch, (list, tuple)) else int(isinstance(self.iterable, (PyDataset, ShuffledPyDataset)))
            x, y, sample_weight = unpack(batch)
            # This process's rows of the global batch; as Keras, a lone process takes a dataset's
            # batch as it is (inputs of different lengths, as a batch of graphs, included).
            part = distributed.batch_part(num_samples(x, y, sample_weight)) if distributed.active() is not None else None
            if part is not None:
                x, y, sample_weight = take(x, part), take(y, part), take(sample_weight, part)
            y, sample_weight = to_tensors(y, self.device), to_tensors(sample_weight, self.device)
            if self.class_weight is not None:
                if sample_weight is not None:
                    raise ValueError("Arguments `sample_weight` and `class_weight` cannot be given together.")
                sample_weight = class_weights_to_sample_weights(y, self.class_weight)
            yield StepBatch(to_tensors(x, self.device), y, sample_weight, arity)
        else:  # a whole pass of known length: as Keras, its end opens the next pass (which it never reads)
            if iterator is not self.iterable and _known_length(self.iterable) is not None:
                self._open_next_pass()

    def _open_next_pass(self):
        if isinstance(self.iterable, torch.utils.data.DataLoader):
            iter(self.iterable)
        else:
            _open_loader_draw()


class ShuffledPyDataset:
    """A PyDataset read in a new batch order each pass: Keras's `fit(shuffle=True)` shuffles its
    batch indices with Python's `random` as a pass starts."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def order(self):
        indices = list(range(len(self.dataset)))
        random.shuffle(indices)
        return indices

    def __iter__(self):
        self.dataset.on_epoch_begin()
        for index in self.order():
            yield self.dataset[index]
        self.dataset.on_epoch_end()


def _known_length(iterable):
    """`len(iterable)`, or None where it has none or cannot tell (a tf.data pipeline after
    `from_generator` or `filter` raises TypeError from `__len__`)."""
    try:
        return len(iterable)
    except TypeError:
        return None


class EpochSteps:
    """`steps` batches per epoch from finite `batches`, as Keras's `steps_per_epoch` on arrays.

    A pass over the data carries on from one epoch to the next; an epoch that reaches the end of
    the pass stops there (with a warning) and, as in Keras, opens the next pass as it ends, which
    the next epoch reads. `restart()` drops the pass (evaluation always reads from the data's start).
    """

    def __init__(self, batches, steps):
        self.batches, self.steps = batches, steps
        self._iterator, self._seen = None, 0

    def restart(self):
        self._iterator, self._seen = None, 0

    def first_batch_draws(self):
        if hasattr(self.batches, "first_batch_draws"):
            self.batches.first_batch_draws()

    def _open(self):
        opener = getattr(self.batches, "open_pass", None)
        self._iterator, self._seen = (opener() if opener is not None else iter(self.batches)), 0

    def __iter__(self):
        total = self.batches.steps
        if self._iterator is None:
            self._open()
        for _ in range(self.steps):
            if total is not None and self._seen >= total:
                warnings.warn(
                    f"The data ran out after {total} batches, before `steps`={self.steps} batches of this epoch; "
                    "the epoch ends early and the next one starts a new pass over the data.",
                    stacklevel=2,
                )
                break
            try:
                batch = next(self._iterator)
            except StopIteration:  # a source of unknown length ran out: the next epoch opens a new pass
                self._iterator = None
                return
            self._seen += 1
            yield batch
        if total is not None and self._seen >= total:
            self._open()


def make_batches(x, y=None, sample_weight=None, batch_size=None, shuffle=False, steps=None, device=None, class_weight=None):
    """Pick the batch source for the kind of data given; batches arrive on `device`."""
    if _is_array_like(x):
        batches = ArrayBatches(to_tensors(x), to_tensors(y), to_tensors(sample_weight), batch_size or 32, shuffle, device)
        return batches if steps is None else EpochSteps(batches, steps)
    if y is not None:
        raise ValueError("`y` must not be given when `x` is a generator or dataset that yields (x, y) batches.")
    source, kind, expectation = _self_ordered_kind(x)
    if sample_weight is not None and source:  # as Keras
        raise ValueError(
            f"When providing `x` as a {source}, `sample_weights` should not be passed. Instead, the sample "
            f"weights should be included as part of the {source}."
        )
    if shuffle and expectation:
        warnings.warn(
            f"`shuffle=True` was passed, but will be ignored since the data `x` was provided as {kind}. {expectation}",
            stacklevel=3,
        )
    if shuffle and isinstance(x, PyDataset) and x.num_batches is not None:
        x = ShuffledPyDataset(x)
    if steps is not None and not isinstance(x, collections.abc.Iterator):
        # A dataset read again each epoch (tf.data, PyDataset, DataLoader): as Keras, the next epoch
        # goes on where this one stopped, and a new pass opens when the data runs out.
        return EpochSteps(IterableBatches(x, None, device, class_weight), steps)
    return IterableBatches(x, steps, device, class_weight)


def _self_ordered_kind(x):
    """Keras's names of a data source that carries its own sample weights (`source`, and `kind` for
    its shuffle warning) and, where `fit(shuffle=True)` leaves its order alone, what that warning
    expects of it; Nones for other data."""
    if isinstance(x, torch.utils.data.DataLoader):
        return "torch DataLoader", "a torch DataLoader", "The DataLoader is expected to already be shuffled."
    if isinstance(x, types.GeneratorType):
        return "generator", "a generator", "The generator is expected to yield already-shuffled data."
    if type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec"):
        expectation = "The Dataset is expected to already be shuffled (via `.shuffle(buffer_size)`)."
        return "tf.data.Dataset", "a tf.data.Dataset", expectation
    if isinstance(x, PyDataset):
        if x.num_batches is None:
            return "PyDataset", "an infinite PyDataset", "The PyDataset is expected to already be shuffled."
        return "PyDataset", "a PyDataset", None
    return None, None, None


def _is_array_like(x):
    leaves = flatten(x)
    return bool(leaves) and all(isinstance(leaf, (np.ndarray, torch.Tensor, list, float, int)) or backend.is_foreign_array(leaf) for leaf in leaves)


