"""Layers called inside a TensorFlow graph (`tf.data.Dataset.map`), as Keras 3 allows on any backend.

Keras runs preprocessing layers on TensorFlow tensors inside `tf.data` pipelines. keramic layers
compute with torch, so a call on graph tensors becomes a `tf.py_function` that runs the layer
eagerly on each batch; the output dtypes and shapes the graph needs come from the layer's
symbolic output spec. TensorFlow is only consulted when the caller has imported it.
"""

import sys

import numpy as np
import torch

from keramic.symbolic import KerasTensor, flatten, map_structure
from keramic.tree import pack_sequence_as


def is_graph_call(args) -> bool:
    """True when the first argument holds TensorFlow graph (non-eager) tensors."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not args or isinstance(args[0], torch.Tensor):  # the common case stays cheap
        return False
    symbolic = getattr(tf, "is_symbolic_tensor", lambda t: isinstance(t, tf.Tensor) and not hasattr(t, "numpy"))
    return any(symbolic(leaf) for leaf in flatten(args[0]))


def call_in_graph(layer, args, kwargs):
    """`layer(*args, **kwargs)` inside a TensorFlow graph, through one `tf.py_function` per call."""
    import tensorflow as tf

    inputs, rest = args[0], args[1:]
    leaves = flatten(inputs)
    placeholders = [_placeholder(tf, leaf) for leaf in leaves]
    symbolic = pack_sequence_as(inputs, placeholders) if isinstance(inputs, (list, tuple, dict)) else placeholders[0]
    spec_kwargs = {key: value for key, value in kwargs.items() if key != "training"}
    layer._maybe_build((symbolic, *rest), spec_kwargs)
    spec = layer.compute_output_spec(symbolic, *rest, **spec_kwargs)
    spec_leaves = flatten(spec)
    # A layer whose eager outputs differ in dtype from its symbolic spec (a lookup's int64 one-hot
    # rows, float32 symbolically in Keras) names the eager one: Keras's tf.data maps yield that.
    graph_dtype = getattr(layer, "_graph_output_dtype", None)
    out_dtypes = [_tf_dtype(tf, graph_dtype or leaf.dtype) for leaf in spec_leaves]

    def run(*values):
        eager = [value if value.dtype == tf.string else value.numpy() for value in values]
        x = pack_sequence_as(inputs, eager) if isinstance(inputs, (list, tuple, dict)) else eager[0]
        outputs = flatten(layer(x, *rest, **kwargs))
        return [_to_numpy(output, dtype) for output, dtype in zip(outputs, out_dtypes)]

    results = tf.py_function(run, leaves, out_dtypes)
    # A layer whose `tf.data` outputs have another static shape than its symbolic spec names it.
    graph_shape = getattr(layer, "_graph_output_shape", None)
    for result, leaf in zip(results, spec_leaves):
        result.set_shape(graph_shape(placeholders[0].shape) if graph_shape and len(spec_leaves) == 1 else leaf.shape)
    return map_structure(lambda _: results.pop(0), spec) if len(spec_leaves) > 1 else results[0]


def _placeholder(tf, tensor):
    dtype = "string" if tensor.dtype == tf.string else tensor.dtype.name
    return KerasTensor(tensor.shape.as_list() if tensor.shape.rank is not None else (None,), dtype)


def _tf_dtype(tf, dtype):
    return tf.string if dtype == "string" else tf.as_dtype(dtype)


def _to_numpy(value, tf_dtype):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array if array.dtype.kind in "OSU" else array.astype(tf_dtype.as_numpy_dtype, copy=False)
