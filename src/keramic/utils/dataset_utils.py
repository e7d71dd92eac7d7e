"""Datasets from arrays and directories (`keras.utils.*_dataset_from_*`, `split_dataset`).

Keras returns `tf.data.Dataset`s; keramic has no TensorFlow, so these return an
`ArrayDataset`: a re-iterable dataset (of arrays, or of rows made batch by batch: images, windows,
clips) with the `tf.data` methods Keras guides use (`batch`, `unbatch`, `shuffle`, `map`, `take`,
`prefetch`, `cache`), accepted by `fit`. Its
arrays come out as `EagerArray`s, with the `.numpy()` Keras examples call on batches. Where the
caller has imported TensorFlow, `timeseries_dataset_from_array` returns a `tf.data.Dataset`, as
Keras does (examples zip and map its windows with tf.data), and the directory datasets decode
images and draw their shuffled order with TensorFlow, so their batches are Keras's.
"""

import math
import os
import sys

import numpy as np
import torch

from keramic.symbolic import flatten, map_structure

ALLOWED_IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


class EagerArray(np.ndarray):
    """A batch array with the `.numpy()` of a TensorFlow eager tensor, which Keras examples call on batches."""

    def numpy(self) -> np.ndarray:
        """The plain array; strings come back as UTF-8 bytes, as TensorFlow returns them."""
        array: np.ndarray = self.view(np.ndarray)
        if array.dtype == object and array.size and isinstance(array.flat[0], str):
            return np.vectorize(lambda text: text.encode("utf-8"), otypes=[object])(array)
        return array


def _eager(element):
    return map_structure(lambda a: a.view(EagerArray) if type(a) is np.ndarray else a, element)


class LazyRows:
    """Rows made when indexed, not held: a directory of images or the windows of a long series need
    not fit in memory (Keras's tf.data pipelines make each batch as it is read, too).

    `make_rows(positions)` returns the rows at those positions, stacked."""

    def __init__(self, count, make_rows, empty_shape, dtype="float32"):
        self._count = int(count)
        self._make_rows = make_rows
        self._empty = np.zeros((0, *empty_shape), dtype)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self[np.asarray([index])][0]
        picked = np.arange(self._count)[index]
        return self._make_rows(picked) if len(picked) else self._empty


def _take(array, index):
    """Rows `index` of an array (or of `LazyRows`, made now)."""
    return array[index] if isinstance(array, LazyRows) else np.asarray(array)[index]


class TFShuffleOrder:
    """Element orders from a `tf.data` shuffle of the indices, a new one per iteration.

    A directory dataset made while TensorFlow is loaded draws its order (and each epoch's reshuffle)
    as Keras's `tf.data` pipeline does, so a seeded fit sees Keras's batches. One object is shared
    by the datasets `map`/`prefetch`/`take` derive, as their tf.data counterparts share one shuffle.
    """

    def __init__(self, size: int, buffer_size: int, seed: int) -> None:
        import tensorflow as tf

        self._indices = tf.data.Dataset.range(size).shuffle(buffer_size, seed=seed)

    def next_order(self) -> np.ndarray:
        return np.fromiter(self._indices.as_numpy_iterator(), dtype=np.int64)


class ArrayDataset:
    """Elements along the first axis of a structure of arrays; optionally batched, shuffled, mapped."""

    def __init__(self, data, batch_size=None, drop_remainder=False, shuffle_seed=None, shuffle=False,
                 functions=(), class_names=None, limit=None, shuffle_order=None):
        self.data = data
        self.batch_size = batch_size
        self.drop_remainder = drop_remainder
        self.shuffle_seed = shuffle_seed
        self._shuffle = shuffle
        self._shuffle_order = shuffle_order
        self._functions = tuple(functions)
        self.class_names = class_names
        self._limit = limit
        self._epoch = 0

    def _replace(self, **changes):
        fields = dict(data=self.data, batch_size=self.batch_size, drop_remainder=self.drop_remainder,
                      shuffle_seed=self.shuffle_seed, shuffle=self._shuffle, functions=self._functions,
                      class_names=self.class_names, limit=self._limit, shuffle_order=self._shuffle_order)
        fields.update(changes)
        return ArrayDataset(**fields)

    @property
    def num_elements(self):
        return len(flatten(self.data)[0])

    def __len__(self):
        count = self.num_elements
        if self.batch_size is not None:
            count = count // self.batch_size if self.drop_remainder else math.ceil(count / self.batch_size)
        return count if self._limit is None else min(count, self._limit)

    def cardinality(self):
        return len(self)

    def __getitem__(self, index):
        """Element (unbatched) or batch `index`, in the unshuffled order (as a torch `Dataset`)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        index %= len(self)
        step = self.batch_size or 1
        rows = slice(index * step, index * step + step) if self.batch_size else index
        element = map_structure(lambda a: _take(a, rows), self.data)
        for fn in self._functions:
            element = fn(*element) if isinstance(element, tuple) else fn(element)
        return _eager(element)

    def __iter__(self):
        size = self.num_elements
        order = np.arange(size)
        if self._shuffle and self._shuffle_order is not None:
            order = self._shuffle_order.next_order()
        elif self._shuffle:
            order = np.random.default_rng(None if self.shuffle_seed is None else self.shuffle_seed + self._epoch).permutation(size)
            self._epoch += 1
        step = self.batch_size or 1
        for count, start in enumerate(range(0, size, step)):
            if self._limit is not None and count >= self._limit:
                return
            index = order[start:start + step]
            if self.batch_size is None:
                element = map_structure(lambda a: _take(a, index[0]), self.data)
            else:
                if self.drop_remainder and len(index) < step:
                    return
                element = map_structure(lambda a: _take(a, index), self.data)
            for fn in self._functions:
                element = fn(*element) if isinstance(element, tuple) else fn(element)
            yield _eager(element)

    def batch(self, batch_size, drop_remainder=False, **kwargs):
        if self.batch_size is not None:
            raise ValueError("This dataset is already batched; call unbatch() first.")
        return self._replace(batch_size=int(batch_size), drop_remainder=drop_remainder)

    def unbatch(self):
        return self._replace(batch_size=None, drop_remainder=False)

    def shuffle(self, buffer_size=None, seed=None, reshuffle_each_iteration=True):
        return self._replace(shuffle=True, shuffle_seed=seed, shuffle_order=None)

    def map(self, map_func, num_parallel_calls=None, **kwargs):
        return self._replace(functions=self._functions + (map_func,))

    def take(self, count):
        return self._replace(limit=int(count))

    def prefetch(self, buffer_size=None):
        return self

    def cache(self, filename=""):
        return self

    def repeat(self, count=None):
        return self

    def as_numpy_iterator(self):
        return iter(self)


def split_dataset(dataset, left_size=None, right_size=None, shuffle=False, seed=None, preferred_backend=None):
    """Split arrays (or a tuple/list/dict of arrays, an ArrayDataset, a torch Dataset) into two datasets.

    Sizes are fractions (float) or counts (int); one may be left out, and together they must
    cover every sample, as in Keras's torch backend. A seeded shuffle draws Keras's order there
    (`torch.randperm` from a generator seeded with `seed`); without `shuffle` the order is kept,
    where Keras's torch backend shuffles anyway (with torch's global generator). A torch Dataset
    splits into `torch.utils.data.Subset`s, as Keras's; arrays into ArrayDatasets.
    """
    data = dataset.data if isinstance(dataset, ArrayDataset) else dataset
    if isinstance(data, list):  # as Keras: a list of arrays is a tuple of inputs
        data = tuple(data) if all(isinstance(item, np.ndarray) for item in data) else np.asarray(data)
    from_torch = isinstance(data, torch.utils.data.Dataset)
    if not from_torch and (
        not isinstance(data, (np.ndarray, tuple, dict, LazyRows)) or not all(getattr(leaf, "ndim", 1) for leaf in flatten(data))
    ):
        raise TypeError(f"Unsupported dataset type: {type(dataset)}")
    if left_size is None and right_size is None:
        raise ValueError(
            "At least one of left_size or right_size must be specified. Received: left_size=None and right_size=None"
        )
    total = len(data) if from_torch else len(flatten(data)[0])
    left = _split_size("left_size", left_size, total)
    right = _split_size("right_size", right_size, total)
    left = total - right if left is None else left
    right = total - left if right is None else right
    if left + right != total:
        raise ValueError(
            f"The split sizes must add up to the {total} samples of the dataset. "
            f"Received: left_size={left_size} ({left} samples), right_size={right_size} ({right} samples)"
        )
    order = np.arange(total)
    if shuffle:
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        order = torch.randperm(total, generator=generator).numpy()
    if from_torch:
        return torch.utils.data.Subset(data, order[:left].tolist()), torch.utils.data.Subset(data, order[left:].tolist())

    def pick(index):
        return map_structure(lambda a: _take(a, index), data)

    return ArrayDataset(pick(order[:left])), ArrayDataset(pick(order[left:]))


def _split_size(name, size, total):
    """A split size as a count: Keras's checks (a count strictly inside the dataset, a fraction in (0, 1))."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"Invalid `{name}` Type. Expected: int or float or None, Received: type({name})={type(size)}.")
    if (isinstance(size, int) and not 0 < size < total) or (isinstance(size, float) and not 0 < size < 1):
        raise ValueError(
            f"`{name}` should be either a positive integer smaller than {total}, "
            f"or a float within the range `[0, 1]`. Received: {name}={size}"
        )
    return int(round(size * total)) if isinstance(size, float) else size


def _check_format(format: str) -> None:
    """Keras's `format` argument: "tf" is the dataset these loaders give (with `tf.data`'s methods)."""
    if format == "grain":
        raise ValueError('`format="grain"` (a Grain dataset) is not available in keramic; use format="tf".')
    if format != "tf":
        raise ValueError(f'`format` should be either "tf" or "grain". Received: format={format}')


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1, sampling_rate=1, batch_size=128,
                                  shuffle=False, seed=None, start_index=None, end_index=None, format="tf"):
    """Sliding windows over `data` (and the target at each window's start), batched."""
    _check_format(format)
    data = np.asarray(data)
    start = start_index or 0
    end = len(data) if end_index is None else end_index
    span = (sequence_length - 1) * sampling_rate
    starts = np.arange(start, end - span, sequence_stride)
    if targets is not None:
        starts = starts[starts < len(targets)]
    offsets = np.arange(sequence_length) * sampling_rate
    tf = sys.modules.get("tensorflow")
    if tf is not None:  # a caller that imported TensorFlow gets Keras's tf.data.Dataset (to zip, map, ...)
        series, steps = tf.constant(data), tf.constant(offsets)
        dataset = tf.data.Dataset.from_tensor_slices(starts).map(lambda first: tf.gather(series, first + steps))  # windows made as read
        if targets is not None:
            dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.from_tensor_slices(np.asarray(targets)[starts])))
        if shuffle:
            dataset = dataset.shuffle(buffer_size=batch_size * 8, seed=seed)
        return dataset.batch(batch_size) if batch_size is not None else dataset
    # Windows are cut batch by batch (the series may be long); as Keras, shuffle=True draws a new
    # window order every epoch.
    windows = LazyRows(len(starts), lambda picked: data[starts[picked][:, None] + offsets[None]], (sequence_length, *data.shape[1:]), data.dtype)
    elements = windows if targets is None else (windows, np.asarray(targets)[starts])
    return ArrayDataset(elements, batch_size=batch_size, shuffle=shuffle, shuffle_seed=seed)


def _class_directories(directory, class_names):
    found = sorted(entry for entry in os.listdir(directory) if os.path.isdir(os.path.join(directory, entry)))
    if class_names is not None:
        if sorted(class_names) != sorted(found) and set(class_names) - set(found):
            raise ValueError(f"class_names {class_names} do not match the subdirectories of {directory}: {found}.")
        return list(class_names)
    return found


def _collect(directory, labels, class_names, extensions, follow_links):
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple)):
        raise ValueError(f"labels must be 'inferred', None or a list; received {labels!r}.")
    names = _class_directories(directory, class_names) if labels == "inferred" else []
    roots = [(os.path.join(directory, name), index) for index, name in enumerate(names)] or [(directory, 0)]
    paths, label_values = [], []
    for root, index in roots:
        for folder, _, files in sorted(os.walk(root, followlinks=follow_links)):
            for filename in sorted(files):
                if filename.lower().endswith(extensions):
                    paths.append(os.path.join(folder, filename))
                    label_values.append(index)
    if isinstance(labels, (list, tuple)):
        if len(labels) != len(paths):
            raise ValueError(f"Expected {len(paths)} labels (one per file in {directory}); received {len(labels)}.")
        label_values = list(labels)
    return paths, np.asarray(label_values), names


def _listed_splits(directory, labels, label_mode, class_names, extensions, follow_links, verbose, validation_split, subset,
                   shuffle, seed):
    """The `*_dataset_from_directory` listing: (splits of [paths, label values], labels, class names),
    with Keras's "Found ..." line; `label_mode=None` means no labels and no classes, as in Keras."""
    labels = None if label_mode is None else labels
    paths, values, names = _collect(directory, labels, class_names, extensions, follow_links)
    if verbose:
        _report_found(len(paths), labels, names)
    return _subset([np.asarray(paths), values], validation_split, subset, shuffle, seed), labels, names


def _drawn_seed(seed, shuffle, validation_split):
    """As Keras: no seed means one drawn from NumPy's global generator (so `set_random_seed` repeats
    the file order), except where a validation split needs the caller's seed (an error follows)."""
    if seed is None and not (shuffle and validation_split):
        return int(np.random.randint(1e6))
    return seed


def _shuffle_order(count, shuffle, batch_size, seed):
    """Keras's `tf.data` shuffle order (a buffer of 8 batches) where TensorFlow is loaded, else None."""
    if not shuffle or "tensorflow" not in sys.modules:
        return None
    return TFShuffleOrder(count, batch_size * 8 if batch_size is not None else 1024, seed)


def _report_found(count: int, labels, names) -> None:
    """Keras's "Found ..." line: an unlabelled listing names no classes; given labels count their values."""
    if labels is None:
        print(f"Found {count} files.")
    else:
        classes = len(set(labels)) if isinstance(labels, (list, tuple)) else len(names) or 1
        print(f"Found {count} files belonging to {classes} classes.")


def _encode_labels(values, label_mode, num_classes):
    if label_mode == "int":
        return values.astype("int32")
    if label_mode == "categorical":
        return np.eye(num_classes, dtype="float32")[values]
    if label_mode == "binary":
        if num_classes != 2:
            raise ValueError(f"label_mode='binary' needs exactly 2 classes; found {num_classes}.")
        return values.astype("float32")[:, None]
    raise ValueError(f"label_mode must be 'int', 'categorical', 'binary' or None; received {label_mode!r}.")


def _subset(items, validation_split, subset, shuffle, seed):
    count = len(items[0])
    order = np.arange(count)
    if shuffle:  # Keras's file order: one RandomState(seed) shuffle, so a seed picks the same subsets
        np.random.RandomState(seed).shuffle(order)
    items = [np.asarray(item)[order] if len(item) else item for item in items]
    if not validation_split:
        return [items]
    if seed is None and shuffle:
        raise ValueError("validation_split with shuffle needs a `seed`, so both subsets use the same order.")
    split = count - int(validation_split * count)
    train = [item[:split] for item in items]
    validation = [item[split:] for item in items]
    if subset in ("training", "both"):
        print(f"Using {split} files for training.")
    if subset in ("validation", "both"):
        print(f"Using {count - split} files for validation.")
    if subset == "training":
        return [train]
    if subset == "validation":
        return [validation]
    if subset == "both":
        return [train, validation]
    raise ValueError(f"subset must be 'training', 'validation' or 'both' with validation_split; received {subset!r}.")


def _decoded(path, color_mode):
    """Pixels as Keras's pipeline decodes them: with TensorFlow loaded, its decoder (whose JPEG
    inverse DCT rounds differently from Pillow's, by up to 4 levels), else Pillow's."""
    from keramic.utils.image_utils import img_to_array, load_img

    tf = sys.modules.get("tensorflow")
    if tf is None:
        return img_to_array(load_img(path, color_mode=color_mode), data_format="channels_last")
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[color_mode]
    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False).numpy().astype("float32")


def _load_image(path, image_size, color_mode, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format):
    """Decoded at its own size, then resized as Keras resizes here (tf.image.resize: float pixels, no
    antialiasing), not with Pillow, whose downscaling filters differ."""
    from keramic import ops
    from keramic.utils.image_utils import img_to_array, smart_resize

    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to `True`.")
    image = _decoded(path, color_mode)
    if crop_to_aspect_ratio:
        image = smart_resize(image, image_size, interpolation=interpolation)
    else:
        image = ops.convert_to_numpy(ops.image.resize(image, image_size, interpolation=interpolation,
                                                      pad_to_aspect_ratio=pad_to_aspect_ratio, data_format="channels_last"))
    return img_to_array(image, data_format=data_format)


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
                                 batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
                                 subset=None, interpolation="bilinear", follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, format="tf", verbose=True):
    """Images in `directory/<class>/...` -> batches of (images, labels), decoded with Pillow."""
    _check_format(format)
    seed = _drawn_seed(seed, shuffle, validation_split)
    splits, labels, names = _listed_splits(directory, labels, label_mode, class_names, ALLOWED_IMAGE_FORMATS, follow_links, verbose,
                                           validation_split, subset, shuffle, seed)
    datasets = []
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[color_mode]
    def loader(paths):
        return lambda picked: np.stack([_load_image(paths[i], tuple(image_size), color_mode, interpolation, crop_to_aspect_ratio,
                                                    pad_to_aspect_ratio, data_format) for i in picked])

    for index, (split_paths, split_values) in enumerate(splits):
        images = LazyRows(len(split_paths), loader(list(split_paths)), tuple(image_size) + (channels,))  # decoded batch by batch
        elements = images if label_mode is None or labels is None else (
            images, _encode_labels(np.asarray(split_values), label_mode, max(len(names), 1)))
        # As Keras: the training subset is reshuffled every epoch; the validation half of "both" is not.
        shuffled = shuffle and index == 0
        dataset = ArrayDataset(elements, batch_size=batch_size, class_names=names or None, shuffle=shuffled, shuffle_seed=seed,
                               shuffle_order=_shuffle_order(len(split_paths), shuffled, batch_size, seed))
        dataset.file_paths = [str(path) for path in split_paths]  # as Keras: the split's files, in the seeded order
        datasets.append(dataset)
    return datasets[0] if len(datasets) == 1 else datasets


def text_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                max_length=None, shuffle=True, seed=None, validation_split=None, subset=None,
                                follow_links=False, format="tf", verbose=True):
    """Text files in `directory/<class>/*.txt` -> batches of (strings, labels)."""
    _check_format(format)
    seed = _drawn_seed(seed, shuffle, validation_split)
    splits, labels, names = _listed_splits(directory, labels, label_mode, class_names, (".txt",), follow_links, verbose,
                                           validation_split, subset, shuffle, seed)
    datasets = []
    for index, (split_paths, split_values) in enumerate(splits):
        texts = []
        for path in split_paths:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            texts.append(text[:max_length] if max_length is not None else text)
        texts = np.asarray(texts, dtype=object)
        elements = texts if label_mode is None or labels is None else (
            texts, _encode_labels(np.asarray(split_values), label_mode, max(len(names), 1)))
        # As Keras: the training subset is reshuffled every epoch; the validation half of "both" is not.
        shuffled = shuffle and index == 0
        datasets.append(ArrayDataset(elements, batch_size=batch_size, class_names=names or None, shuffle=shuffled, shuffle_seed=seed,
                                     shuffle_order=_shuffle_order(len(split_paths), shuffled, batch_size, seed)))
    return datasets[0] if len(datasets) == 1 else datasets
