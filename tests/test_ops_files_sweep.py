"""Every public `keras.ops` function as a node in `.keras` files, both ways.

For each op: a tiny Functional model built with real Keras 3 (torch backend) is saved as `.keras`,
loaded by keramic and must predict what Keras predicts; the same model built with `keramic.ops`
and saved by keramic must load in Keras and predict the same. Ops are batched into one model per
group (one file each way); a group that fails to save or load is retried op by op, so a run names
every failing op at once. Expected numbers always come from the Keras-built model.
"""

import importlib
import inspect
import json

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop

BATCH = 2
RNG = np.random.default_rng(7)


def _spd(n):
    a = RNG.normal(size=(BATCH, n, n))
    return (a @ np.swapaxes(a, 1, 2) + n * np.eye(n)).astype("float32")


# name -> (per-sample shape, dtype, batch of values)
INPUTS = {
    "x": ((3, 4), "float32", RNG.uniform(0.1, 0.9, (BATCH, 3, 4)).astype("float32")),
    "y": ((3, 4), "float32", RNG.uniform(0.1, 0.9, (BATCH, 3, 4)).astype("float32")),
    "s": ((3, 4), "float32", RNG.normal(size=(BATCH, 3, 4)).astype("float32")),
    "i": ((3, 4), "int32", RNG.integers(0, 4, (BATCH, 3, 4)).astype("int32")),
    "j": ((3, 4), "int32", RNG.integers(1, 5, (BATCH, 3, 4)).astype("int32")),
    "b": ((3, 4), "bool", RNG.random((BATCH, 3, 4)) > 0.5),
    "m": ((3, 3), "float32", _spd(3)),
    "img": ((6, 6, 3), "float32", RNG.random((BATCH, 6, 6, 3)).astype("float32")),
    "vol": ((4, 4, 4, 2), "float32", RNG.random((BATCH, 4, 4, 4, 2)).astype("float32")),
    "sig": ((16,), "float32", RNG.normal(size=(BATCH, 16)).astype("float32")),
    "v": ((None, 4), "float32", RNG.normal(size=(BATCH, 5, 4)).astype("float32")),  # a variable-length axis
}

# Outputs whose values are unspecified (uninitialised memory): only shapes and dtypes are compared.
SHAPE_ONLY = {"empty_like", "empty", "image.elastic_transform"}

# (label, keras.ops function the case covers, input names, fn(ops namespace, *inputs) -> tensor(s))
CASES = [
    # Elementwise, one float input in (0.1, 0.9) or signed.
    *[(n, n, "x", (lambda n: lambda o, x: getattr(o, n)(x))(n)) for n in (
        "abs absolute fabs arccos arcsin arctan arcsinh arctanh ceil floor cos cosh sin sinh tan tanh exp exp2 "
        "expm1 log log10 log1p log2 sqrt rsqrt square cbrt reciprocal deg2rad rad2deg sinc sign trunc negative "
        "copy conj conjugate real angle erf erfc erfinv i0 signbit isnan isinf isfinite isposinf isneginf "
        "isreal nan_to_num ravel stop_gradient zeros_like ones_like empty_like fliplr flipud flip sort argsort "
        "cumsum cumprod nancumsum nancumprod"
    ).split()],
    ("arccosh", "arccosh", "x", lambda o, x: o.arccosh(x + 1.0)),
    ("round", "round", "s", lambda o, s: o.round(s * 10.0, decimals=1)),
    ("imag", "imag", "xy", lambda o, x, y: o.imag(o.view_as_complex(o.stack([x, y], -1)))),
    ("logical_not", "logical_not", "b", lambda o, b: o.logical_not(b)),
    *[(n, n, "s", (lambda n: lambda o, s: getattr(o, n)(s))(n)) for n in (
        "relu relu6 sigmoid softplus softsign silu swish log_sigmoid hard_sigmoid hard_silu hard_swish hard_tanh "
        "selu elu celu leaky_relu gelu tanh_shrink sparse_sigmoid squareplus hard_shrink soft_shrink sparse_plus "
        "softmax log_softmax glu sparsemax normalize rms_normalization layer_normalization"
    ).split()],
    ("gelu_exact", "gelu", "s", lambda o, s: o.gelu(s, approximate=False)),
    ("softmax_axis", "softmax", "s", lambda o, s: o.softmax(s, axis=1)),
    ("threshold", "threshold", "s", lambda o, s: o.threshold(s, 0.1, -1.0)),
    ("full_like", "full_like", "x", lambda o, x: o.full_like(x, 3.0)),
    ("cast", "cast", "s", lambda o, s: o.cast(s * 3.0, "int32")),
    ("saturate_cast", "saturate_cast", "s", lambda o, s: o.saturate_cast(s * 200.0, "uint8")),
    ("convert_to_tensor", "convert_to_tensor", "x", lambda o, x: o.convert_to_tensor(x, dtype="float16")),
    ("array", "array", "x", lambda o, x: o.array(x)),
    ("view", "view", "x", lambda o, x: o.view(x, "int32")),
    # Elementwise, two inputs.
    *[(n, n, "xy", (lambda n: lambda o, x, y: getattr(o, n)(x, y))(n)) for n in (
        "add subtract multiply divide true_divide divide_no_nan power maximum minimum fmax fmin fmod mod "
        "floor_divide arctan2 hypot logaddexp logaddexp2 nextafter equal not_equal greater greater_equal less "
        "less_equal isclose cdist"
    ).split()],
    ("heaviside", "heaviside", "sy", lambda o, s, y: o.heaviside(s, y)),
    ("allclose", "allclose", "xy", lambda o, x, y: o.cast(o.allclose(x, y), "float32") + x),
    ("polar", "polar", "xy", lambda o, x, y: o.real(o.polar(x, y))),
    ("ldexp", "ldexp", "xi", lambda o, x, i: o.ldexp(x, i)),
    *[(n, n, "xb", (lambda n: lambda o, x, b: getattr(o, n)(x > 0.5, b))(n)) for n in (
        "logical_and logical_or logical_xor").split()],
    *[(n, n, "ij", (lambda n: lambda o, i, j: getattr(o, n)(i, j))(n)) for n in (
        "gcd lcm bitwise_and bitwise_or bitwise_xor bitwise_left_shift bitwise_right_shift left_shift right_shift"
    ).split()],
    ("bitwise_invert", "bitwise_invert", "i", lambda o, i: o.bitwise_invert(i)),
    ("bitwise_not", "bitwise_not", "i", lambda o, i: o.bitwise_not(i)),
    ("where", "where", "bxy", lambda o, b, x, y: o.where(b, x, y)),
    ("clip", "clip", "s", lambda o, s: o.clip(s, -0.5, 0.5)),
    # Reductions.
    *[(n, n, "x", (lambda n: lambda o, x: getattr(o, n)(x, axis=1))(n)) for n in (
        "sum mean max min amax amin prod std var median ptp argmax argmin logsumexp nansum nanmean nanmax nanmin "
        "nanprod nanstd nanvar nanmedian nanargmax nanargmin count_nonzero"
    ).split()],
    ("count_nonzero_flat", "count_nonzero", "x", lambda o, x: o.count_nonzero(x - 0.5 > 0, axis=(1, 2))),
    ("sum_keepdims", "sum", "x", lambda o, x: o.sum(x, axis=(1, 2), keepdims=True)),
    ("all", "all", "b", lambda o, b: o.all(b, axis=-1)),
    ("any", "any", "b", lambda o, b: o.any(b, axis=1, keepdims=True)),
    *[(n, n, "x", (lambda n, q: lambda o, x: getattr(o, n)(x, q, axis=-1))(n, q)) for n, q in (
        ("percentile", 30.0), ("nanpercentile", 60.0), ("quantile", 0.3), ("nanquantile", 0.7))],
    ("average", "average", "xy", lambda o, x, y: o.average(x, axis=-1, weights=y[0, 0])),
    ("norm", "norm", "x", lambda o, x: o.norm(x, axis=-1)),
    ("norm_matrix", "norm", "x", lambda o, x: o.norm(x, ord="fro", axis=(1, 2))),
    ("moments", "moments", "x", lambda o, x: o.moments(x, axes=[1])),
    ("trapezoid", "trapezoid", "x", lambda o, x: o.trapezoid(x, axis=-1)),
    ("size", "size", "x", lambda o, x: x + o.cast(o.size(x[0]), "float32")),
    # Shapes, indexing, joining.
    ("reshape", "reshape", "x", lambda o, x: o.reshape(x, (-1, 2, 6))),
    ("transpose", "transpose", "x", lambda o, x: o.transpose(x, (0, 2, 1))),
    ("expand_dims", "expand_dims", "x", lambda o, x: o.expand_dims(x, 1)),
    ("squeeze", "squeeze", "x", lambda o, x: o.squeeze(x[:, :1], axis=1)),
    ("moveaxis", "moveaxis", "x", lambda o, x: o.moveaxis(x, 1, 2)),
    ("swapaxes", "swapaxes", "x", lambda o, x: o.swapaxes(x, 1, 2)),
    ("broadcast_to", "broadcast_to", "x", lambda o, x: o.broadcast_to(x[:, :1], (BATCH, 5, 4))),
    ("tile", "tile", "x", lambda o, x: o.tile(x, (1, 2, 1))),
    ("repeat", "repeat", "x", lambda o, x: o.repeat(x, 2, axis=2)),
    ("roll", "roll", "x", lambda o, x: o.roll(x, 1, axis=2)),
    ("rot90", "rot90", "x", lambda o, x: o.rot90(x, axes=(1, 2))),
    ("pad", "pad", "x", lambda o, x: o.pad(x, ((0, 0), (1, 1), (2, 0)))),
    ("pad_reflect", "pad", "x", lambda o, x: o.pad(x, ((0, 0), (1, 1), (2, 0)), mode="reflect")),
    ("concatenate", "concatenate", "xy", lambda o, x, y: o.concatenate([x, y], axis=-1)),
    ("stack", "stack", "xy", lambda o, x, y: o.stack([x, y], axis=1)),
    ("unstack", "unstack", "x", lambda o, x: o.unstack(x, axis=1)),
    ("split", "split", "x", lambda o, x: o.split(x, 2, axis=-1)),
    ("split_indices", "split", "x", lambda o, x: o.split(x, [1, 3], axis=-1)),
    ("array_split", "array_split", "x", lambda o, x: o.array_split(x, 3, axis=-1)),
    ("hsplit", "hsplit", "x", lambda o, x: o.hsplit(x, 3)),
    ("vsplit", "vsplit", "x", lambda o, x: o.vsplit(o.concatenate([x, x]), 2)),
    ("dsplit", "dsplit", "x", lambda o, x: o.dsplit(x, 2)),
    ("hstack", "hstack", "xy", lambda o, x, y: o.hstack([x, y])),
    ("vstack", "vstack", "xy", lambda o, x, y: o.vstack([x, y])),
    ("dstack", "dstack", "xy", lambda o, x, y: o.dstack([x, y])),
    ("append", "append", "xy", lambda o, x, y: o.append(x, y, axis=1)),
    ("diagonal", "diagonal", "x", lambda o, x: o.diagonal(x, axis1=1, axis2=2)),
    ("diag", "diag", "x", lambda o, x: o.diag(x[:, 0])),
    ("diagflat", "diagflat", "x", lambda o, x: o.diagflat(x[:, 0, :2])),
    ("tril", "tril", "x", lambda o, x: o.tril(x, k=-1)),
    ("triu", "triu", "x", lambda o, x: o.triu(x)),
    ("trace", "trace", "x", lambda o, x: o.trace(x, axis1=1, axis2=2)),
    ("diff", "diff", "x", lambda o, x: o.diff(x, n=2)),
    ("take", "take", "x", lambda o, x: o.take(x, [0, 2], axis=1)),
    ("take_along_axis", "take_along_axis", "xi", lambda o, x, i: o.take_along_axis(x, o.minimum(i, 2), axis=1)),
    ("get_item", "get_item", "x", lambda o, x: o.get_item(x, 1)),
    ("slice", "slice", "x", lambda o, x: o.slice(x, (0, 1, 1), (BATCH, 2, 2))),
    ("slice_update", "slice_update", "xy", lambda o, x, y: o.slice_update(x, (0, 1, 1), y[:, :1, :2])),
    ("scatter", "scatter", "x", lambda o, x: o.scatter([[0, 1], [1, 2]], x[0, 0, :2], (2, 3))),
    ("scatter_update", "scatter_update", "xy", lambda o, x, y: o.scatter_update(x, [[0, 1, 1]], y[0, 0, :1])),
    ("select", "select", "sx", lambda o, s, x: o.select([s > 0.5, s < -0.5], [x, -x], 0.25)),
    ("searchsorted", "searchsorted", "sx", lambda o, s, x: o.searchsorted(o.sort(s[0, 0]), x[0, 0])),
    ("digitize", "digitize", "s", lambda o, s: o.digitize(s, o.array([-0.5, 0.0, 0.5]))),
    ("isin", "isin", "ij", lambda o, i, j: o.isin(i, j)),
    ("argpartition", "argpartition", "x", lambda o, x: o.argpartition(x, 1, axis=-1)),
    ("top_k", "top_k", "x", lambda o, x: o.top_k(x, 2)[0]),
    ("in_top_k", "in_top_k", "xi", lambda o, x, i: o.in_top_k(i[:, 0, 0], x[:, 0], 2)),
    ("one_hot", "one_hot", "i", lambda o, i: o.one_hot(i, 5)),
    ("multi_hot", "multi_hot", "i", lambda o, i: o.multi_hot(i[:, 0], 5)),
    ("bincount", "bincount", "i", lambda o, i: o.bincount(i[:, 0], minlength=5)),
    ("unravel_index", "unravel_index", "i", lambda o, i: o.unravel_index(i, (2, 2))),
    ("meshgrid", "meshgrid", "x", lambda o, x: o.meshgrid(x[0, 0], x[1, 1, :3])),
    ("vander", "vander", "x", lambda o, x: o.vander(x[0, 0])),
    ("correlate", "correlate", "xy", lambda o, x, y: o.correlate(x[0, 0], y[0, 0, :2])),
    ("corrcoef", "corrcoef", "x", lambda o, x: o.corrcoef(x[:, 0])),
    ("view_as_complex", "view_as_complex", "xy", lambda o, x, y: o.real(o.view_as_complex(o.stack([x, y], -1)))),
    ("view_as_real", "view_as_real", "xy", lambda o, x, y: o.view_as_real(o.view_as_complex(o.stack([x, y], -1)))),
    # Products.
    ("matmul", "matmul", "xy", lambda o, x, y: o.matmul(x, o.transpose(y, (0, 2, 1)))),
    ("dot", "dot", "xy", lambda o, x, y: o.dot(x, y[0, 0])),
    ("vdot", "vdot", "xy", lambda o, x, y: o.vdot(x[0, 0], y[0, 0]) + x),
    ("inner", "inner", "xy", lambda o, x, y: o.inner(x, y)),
    ("outer", "outer", "xy", lambda o, x, y: o.outer(x[0, 0], y[0, 0])),
    ("tensordot", "tensordot", "xy", lambda o, x, y: o.tensordot(x, y[0], axes=([1, 2], [0, 1]))),
    ("einsum", "einsum", "xy", lambda o, x, y: o.einsum("bij,bkj->bik", x, y)),
    ("kron", "kron", "xy", lambda o, x, y: o.kron(x[0], y[0, :2, :2])),
    ("cross", "cross", "xy", lambda o, x, y: o.cross(x[..., :3], y[..., :3])),
    ("cross_vectors", "cross", "xy", lambda o, x, y: o.cross(x[:, 0, :3], y[:, 1, 1:])),
    # Constants from functions without tensor inputs, used in a graph.
    ("arange", "arange", "x", lambda o, x: x + o.arange(4, dtype="float32")),
    ("eye", "eye", "m", lambda o, m: m + o.eye(3)),
    ("identity", "identity", "m", lambda o, m: m + o.identity(3)),
    ("tri", "tri", "m", lambda o, m: m * o.tri(3)),
    ("ones", "ones", "x", lambda o, x: x + o.ones((4,))),
    ("zeros", "zeros", "x", lambda o, x: x + o.zeros((3, 4))),
    ("full", "full", "x", lambda o, x: x * o.full((4,), 2.0)),
    ("empty", "empty", "x", lambda o, x: o.empty((4,)) * 0.0 + x),
    ("linspace", "linspace", "x", lambda o, x: x + o.linspace(0.0, 1.0, 4)),
    ("logspace", "logspace", "x", lambda o, x: x + o.logspace(0.0, 1.0, 4)),
    ("geomspace", "geomspace", "x", lambda o, x: x + o.geomspace(1.0, 8.0, 4)),
    *[(n, n, "x", (lambda n: lambda o, x: x * getattr(o, n)(4))(n)) for n in "hamming hanning bartlett blackman".split()],
    ("kaiser", "kaiser", "x", lambda o, x: x * o.kaiser(4, 2.0)),
    # Linear algebra on a batch of SPD matrices.
    *[(n, n, "m", (lambda n: lambda o, m: getattr(o, n)(m))(n)) for n in (
        "cholesky det inv logdet matrix_rank pinv slogdet lu_factor").split()],
    ("cholesky_inverse", "cholesky_inverse", "m", lambda o, m: o.cholesky_inverse(o.cholesky(m))),
    ("eig", "eig", "m", lambda o, m: o.real(o.eig(m)[0])),
    ("eigh", "eigh", "m", lambda o, m: [o.eigh(m)[0], o.abs(o.eigh(m)[1])]),
    ("qr", "qr", "m", lambda o, m: [o.abs(t) for t in o.qr(m)]),
    ("svd", "svd", "m", lambda o, m: o.svd(m)[1]),
    ("solve", "solve", "mx", lambda o, m, x: o.solve(m, x[:, :, :2])),
    ("solve_triangular", "solve_triangular", "mx", lambda o, m, x: o.solve_triangular(m, x, lower=True)),
    ("lstsq", "lstsq", "mx", lambda o, m, x: o.lstsq(m[0], x[0])),
    # Signals.
    ("fft", "fft", "sig", lambda o, t: o.fft((t, t * 0.5))),
    ("fft2", "fft2", "x", lambda o, x: o.fft2((x, x * 0.5))),
    ("ifft2", "ifft2", "x", lambda o, x: o.ifft2((x, x * 0.5))),
    ("rfft", "rfft", "sig", lambda o, t: o.rfft(t)),
    ("irfft", "irfft", "sig", lambda o, t: o.irfft((t[:, :9], t[:, 7:]), fft_length=16)),
    ("stft", "stft", "sig", lambda o, t: o.stft(t, 8, 4, 8)),
    ("istft", "istft", "sig", lambda o, t: o.istft(o.stft(t, 8, 4, 8), 8, 4, 8)),
    ("extract_sequences", "extract_sequences", "sig", lambda o, t: o.extract_sequences(t, 4, 2)),
    # Neural-network ops.
    ("conv", "conv", "x", lambda o, x: o.conv(x, o.ones((2, 4, 3)) * 0.1)),
    ("depthwise_conv", "depthwise_conv", "img", lambda o, t: o.depthwise_conv(t, o.ones((3, 3, 3, 2)), padding="same")),
    ("separable_conv", "separable_conv", "img",
     lambda o, t: o.separable_conv(t, o.ones((3, 3, 3, 2)), o.ones((1, 1, 6, 4)) * 0.5)),
    ("average_pool", "average_pool", "img", lambda o, t: o.average_pool(t, 2)),
    ("max_pool", "max_pool", "img", lambda o, t: o.max_pool(t, 3, strides=2, padding="same")),
    ("adaptive_average_pool", "adaptive_average_pool", "img", lambda o, t: o.adaptive_average_pool(t, (2, 3))),
    ("adaptive_max_pool", "adaptive_max_pool", "img", lambda o, t: o.adaptive_max_pool(t, (4, 4))),
    ("depth_to_space", "depth_to_space", "vol", lambda o, v: o.depth_to_space(o.concatenate([v[:, 0], v[:, 1]], -1), 2)),
    ("space_to_depth", "space_to_depth", "img", lambda o, t: o.space_to_depth(t, 2)),
    ("batch_normalization", "batch_normalization", "xy",
     lambda o, x, y: o.batch_normalization(x, y[0, 0], y[1, 0] + 0.5, axis=-1, offset=y[0, 1], scale=y[1, 1])),
    ("binary_crossentropy", "binary_crossentropy", "xy", lambda o, x, y: o.binary_crossentropy(x, y)),
    ("categorical_crossentropy", "categorical_crossentropy", "xy", lambda o, x, y: o.categorical_crossentropy(x, y)),
    ("sparse_categorical_crossentropy", "sparse_categorical_crossentropy", "iy",
     lambda o, i, y: o.sparse_categorical_crossentropy(o.minimum(i[..., 0], 3), y, from_logits=True)),
    ("ctc_loss", "ctc_loss", "sj", lambda o, s, j: o.ctc_loss(
        o.minimum(j[:, 0, :2], 3), s, o.sum(o.ones_like(j[:, 0, :2]), 1), o.sum(o.ones_like(j[:, :, 0]), 1))),
    ("ctc_decode", "ctc_decode", "s", lambda o, s: o.ctc_decode(s, o.full((BATCH,), 3, dtype="int32"))[1]),
    ("ctc_decode_beam", "ctc_decode", "s", lambda o, s: o.ctc_decode(
        s, o.full((BATCH,), 3, dtype="int32"), strategy="beam_search", beam_width=3, top_paths=2)[1]),
    ("dot_product_attention", "dot_product_attention", "xys",
     lambda o, x, y, s: o.dot_product_attention(x[:, :, None], y[:, :, None], s[:, :, None])),
    ("unfold", "unfold", "img", lambda o, t: o.unfold(o.transpose(t, (0, 3, 1, 2)), 2)),
    ("fold", "fold", "img", lambda o, t: o.fold(o.reshape(t, (BATCH, 12, 9)), (4, 4), 2)),
    ("psnr", "psnr", "xy", lambda o, x, y: o.psnr(x, y, 1.0) + x),
    ("rearrange", "rearrange", "x", lambda o, x: o.rearrange(x[0], "h (w c) -> (c h) w", c=2)),
    ("segment_sum", "segment_sum", "x", lambda o, x: o.segment_sum(x[0], o.array([0, 0, 1], "int32"), num_segments=2)),
    ("segment_max", "segment_max", "x", lambda o, x: o.segment_max(x[0], o.array([0, 1, 1], "int32"), num_segments=2)),
    ("segment_min", "segment_min", "x", lambda o, x: o.segment_min(x[0], o.array([0, 1, 1], "int32"), num_segments=2)),
    ("segment_prod", "segment_prod", "x", lambda o, x: o.segment_prod(x[0], o.array([0, 0, 1], "int32"), num_segments=2)),
    # Images.
    # Variants: Python scalars and constants among node arguments, dtypes, keyword options.
    ("add_scalar", "add", "i", lambda o, i: o.add(i, 2)),
    ("power_scalar", "power", "x", lambda o, x: o.power(2.0, x)),
    ("multiply_bool", "multiply", "b", lambda o, b: o.multiply(b, b)),
    ("divide_ints", "divide", "ij", lambda o, i, j: o.divide(i, j)),
    ("floor_divide_ints", "floor_divide", "ij", lambda o, i, j: o.floor_divide(i, j)),
    ("mod_ints", "mod", "ij", lambda o, i, j: o.mod(i, j)),
    ("sqrt_int", "sqrt", "i", lambda o, i: o.sqrt(i)),
    ("mean_int", "mean", "i", lambda o, i: o.mean(i, axis=-1)),
    ("sum_bool", "sum", "b", lambda o, b: o.sum(b, axis=1)),
    ("max_initial", "max", "s", lambda o, s: o.max(s, axis=1, initial=0.5)),
    ("where_scalar", "where", "bx", lambda o, b, x: o.where(b, x, 0.0)),
    ("clip_int", "clip", "i", lambda o, i: o.clip(i, 1, 2)),
    ("cumsum_dtype", "cumsum", "i", lambda o, i: o.cumsum(i, axis=1, dtype="float32")),
    ("zeros_like_dtype", "zeros_like", "x", lambda o, x: o.zeros_like(x, dtype="int8")),
    ("full_like_int", "full_like", "x", lambda o, x: o.full_like(x, 2, dtype="int32")),
    ("reductions_all_axes", "mean", "x", lambda o, x: o.mean(x) + x),
    ("argmax_keepdims", "argmax", "x", lambda o, x: o.argmax(x, axis=1, keepdims=True)),
    ("var_axes", "var", "x", lambda o, x: o.var(x, axis=(1, 2), keepdims=True)),
    ("get_item_slices", "get_item", "x", lambda o, x: x[:, 1:, ::2]),
    ("get_item_newaxis", "get_item", "x", lambda o, x: x[..., None, -1]),
    ("get_item_negative", "get_item", "x", lambda o, x: x[:, -1, 1:-1]),
    ("take_negative", "take", "x", lambda o, x: o.take(x, [-1, 0], axis=-1)),
    ("take_tensor", "take", "xi", lambda o, x, i: o.take(x[0], o.minimum(i, 2), axis=0)),
    ("pad_constant", "pad", "x", lambda o, x: o.pad(x, ((0, 0), (1, 0), (0, 2)), constant_values=0.5)),
    ("reshape_list", "reshape", "x", lambda o, x: o.reshape(x, [-1, 4, 3])),
    ("transpose_default", "transpose", "x", lambda o, x: o.transpose(x)),
    ("squeeze_none", "squeeze", "x", lambda o, x: o.squeeze(x[:, :1, :1])),
    ("expand_dims_tuple", "expand_dims", "x", lambda o, x: o.expand_dims(x, (1, -1))),
    ("concatenate_ints", "concatenate", "ix", lambda o, i, x: o.concatenate([i, x], axis=1)),
    ("stack_many", "stack", "xys", lambda o, x, y, s: o.stack([x, y, s], axis=-1)),
    ("einsum_three", "einsum", "xys", lambda o, x, y, s: o.einsum("bij,bkj,bkl->bil", x, y, s)),
    ("matmul_int", "matmul", "ij", lambda o, i, j: o.matmul(i, o.transpose(j, (0, 2, 1)))),
    ("log_softmax_axis", "log_softmax", "s", lambda o, s: o.log_softmax(s, axis=1)),
    ("leaky_relu_slope", "leaky_relu", "s", lambda o, s: o.leaky_relu(s, negative_slope=0.1)),
    ("elu_alpha", "elu", "s", lambda o, s: o.elu(s, alpha=0.5)),
    ("normalize_order", "normalize", "s", lambda o, s: o.normalize(s, axis=1, order=1)),
    ("layer_normalization_params", "layer_normalization", "sx",
     lambda o, s, x: o.layer_normalization(s, x[0, 0], x[1, 0], epsilon=1e-5)),
    ("rms_normalization_scale", "rms_normalization", "sx", lambda o, s, x: o.rms_normalization(s, x[0, 0], axis=-1)),
    ("one_hot_axis", "one_hot", "i", lambda o, i: o.one_hot(i[:, 0], 4, axis=1, dtype="int32")),
    ("multi_hot_dtype", "multi_hot", "i", lambda o, i: o.multi_hot(i[:, 0], 5, dtype="int32")),
    ("binary_crossentropy_logits", "binary_crossentropy", "xs", lambda o, x, s: o.binary_crossentropy(x, s, from_logits=True)),
    ("conv_same", "conv", "img", lambda o, t: o.conv(t, o.ones((3, 3, 3, 2)) * 0.1, strides=2, padding="same")),
    ("conv_dilated", "conv", "img", lambda o, t: o.conv(t, o.ones((2, 2, 3, 2)) * 0.1, dilation_rate=2)),
    ("average_pool_same", "average_pool", "img", lambda o, t: o.average_pool(t, 2, strides=1, padding="same")),
    ("max_pool_1d", "max_pool", "x", lambda o, x: o.max_pool(x, 2)),
    ("image.resize_nearest", "image.resize", "img", lambda o, t: o.image.resize(t, (3, 4), interpolation="nearest")),
    ("image.resize_crop", "image.resize", "img", lambda o, t: o.image.resize(t, (4, 2), crop_to_aspect_ratio=True)),
    ("image.resize_pad", "image.resize", "img",
     lambda o, t: o.image.resize(t[:, :5], (4, 2), pad_to_aspect_ratio=True, fill_value=0.5)),
    ("image.resize_bicubic", "image.resize", "img", lambda o, t: o.image.resize(t, (9, 9), interpolation="bicubic")),
    ("image.extract_patches_same", "image.extract_patches", "img",
     lambda o, t: o.image.extract_patches(t, (2, 3), strides=(2, 2), padding="same")),
    ("float16", "sqrt", "x", lambda o, x: o.sqrt(o.cast(x, "float16"))),
    ("mixed_ints", "add", "ij", lambda o, i, j: o.add(o.cast(i, "uint8"), o.cast(j, "int8"))),
    ("bfloat16", "multiply", "x", lambda o, x: o.cast(o.multiply(o.cast(x, "bfloat16"), 3.0), "float32")),
    ("attention_options", "dot_product_attention", "xys",
     lambda o, x, y, s: o.dot_product_attention(x[:, :, None], y[:, :, None], s[:, :, None], mask=o.greater(y[:, None, :, :3], 0.2),
                                                scale=0.5)),
    ("attention_causal", "dot_product_attention", "xys",
     lambda o, x, y, s: o.dot_product_attention(x[:, :, None], y[:, :, None], s[:, :, None], is_causal=True)),
    ("norm_ord", "norm", "x", lambda o, x: o.norm(x, ord=1, axis=-1, keepdims=True)),
    ("variable_reshape", "reshape", "v", lambda o, v: o.reshape(v, (-1, 2))),
    ("variable_mean", "mean", "v", lambda o, v: o.mean(v, axis=1)),
    ("variable_concatenate", "concatenate", "v", lambda o, v: o.concatenate([v, v * 2.0], axis=1)),
    ("variable_matmul", "matmul", "v", lambda o, v: o.matmul(v, o.transpose(v, (0, 2, 1)))),
    ("variable_pad", "pad", "v", lambda o, v: o.pad(v, ((0, 0), (1, 2), (0, 0)))),
    ("variable_tile", "tile", "v", lambda o, v: o.tile(v, (1, 2, 1))),
    ("variable_split", "split", "v", lambda o, v: o.split(v, 2, axis=-1)),
    ("variable_slice", "get_item", "v", lambda o, v: v[:, 1:, :2]),
    ("variable_softmax", "softmax", "v", lambda o, v: o.softmax(v, axis=1)),
    ("variable_cumsum", "cumsum", "v", lambda o, v: o.cumsum(v, axis=1)),
    ("variable_conv", "conv", "v", lambda o, v: o.conv(v, o.ones((2, 4, 3)) * 0.1, padding="same")),
    ("variable_attention", "dot_product_attention", "v",
     lambda o, v: o.dot_product_attention(v[:, :, None], v[:, :, None], v[:, :, None])),
    ("variable_einsum", "einsum", "v", lambda o, v: o.einsum("btd,bsd->bts", v, v)),
    ("variable_top_k", "top_k", "v", lambda o, v: o.top_k(o.transpose(v, (0, 2, 1)), 2)[0]),
    ("variable_sort", "sort", "v", lambda o, v: o.sort(v, axis=1)),
    ("variable_stft", "stft", "v", lambda o, v: o.stft(v[:, :, 0], 2, 1, 2)),
    ("variable_segment", "segment_sum", "v", lambda o, v: o.segment_sum(v[0], o.array([0, 0, 1, 1, 1], "int32"), 2)),
    ("unique", "unique", "x", lambda o, x: o.unique(o.round(x[0, 0] * 2.0))),
    ("unique_size", "unique", "x", lambda o, x: o.unique(o.round(x[0] * 2.0), size=4, fill_value=-1.0)),
    ("unique_counts", "unique", "x", lambda o, x: o.unique(o.round(x[0, 0] * 2.0), return_counts=True, return_index=True)),
    # Tensors passed by keyword.
    ("layer_normalization_keywords", "layer_normalization", "sx",
     lambda o, s, x: o.layer_normalization(s, gamma=x[0, 0], beta=x[1, 0], axis=-1)),
    ("batch_normalization_keywords", "batch_normalization", "xy",
     lambda o, x, y: o.batch_normalization(x, mean=y[0, 0], variance=y[1, 0] + 0.5, axis=-1, scale=y[0, 1])),
    ("where_keywords", "where", "bxy", lambda o, b, x, y: o.where(condition=b, x1=x, x2=y)),
    ("attention_bias", "dot_product_attention", "xys",
     lambda o, x, y, s: o.dot_product_attention(query=x[:, :, None], key=y[:, :, None], value=s[:, :, None],
                                                bias=s[:, None, :, :3] * 0.0 + 0.5)),
    ("take_along_axis_keywords", "take_along_axis", "xi", lambda o, x, i: o.take_along_axis(x, indices=o.minimum(i, 2), axis=1)),
    ("top_k_indices", "top_k", "x", lambda o, x: o.top_k(x, 3, sorted=True)[1]),
    ("unstack_last", "unstack", "x", lambda o, x: o.unstack(x, axis=-1)[-1]),
    ("channels_first_conv", "conv", "img",
     lambda o, t: o.conv(o.transpose(t, (0, 3, 1, 2)), o.ones((2, 2, 3, 2)) * 0.1, data_format="channels_first")),
    ("channels_first_pool", "average_pool", "img",
     lambda o, t: o.average_pool(o.transpose(t, (0, 3, 1, 2)), 2, data_format="channels_first")),
    ("max_pool_3d", "max_pool", "vol", lambda o, v: o.max_pool(v, 2, strides=1)),
    ("depthwise_strided", "depthwise_conv", "img", lambda o, t: o.depthwise_conv(t, o.ones((2, 2, 3, 1)), strides=2)),
    ("image.resize_channels_first", "image.resize", "img",
     lambda o, t: o.image.resize(o.transpose(t, (0, 3, 1, 2)), (3, 3), data_format="channels_first")),
    ("image.grayscale_channels_first", "image.rgb_to_grayscale", "img",
     lambda o, t: o.image.rgb_to_grayscale(o.transpose(t, (0, 3, 1, 2)), data_format="channels_first")),
    ("image.resize", "image.resize", "img", lambda o, t: o.image.resize(t, (4, 8))),
    ("image.affine_transform", "image.affine_transform", "img",
     lambda o, t: o.image.affine_transform(t, o.zeros_like(t[:, 0, 0, :1]) + o.array([1.0, 0.1, 0.5, 0.0, 1.0, -0.5, 0.0, 0.0]))),
    ("image.crop_images", "image.crop_images", "img", lambda o, t: o.image.crop_images(t, 1, 2, target_height=3, target_width=3)),
    ("image.pad_images", "image.pad_images", "img", lambda o, t: o.image.pad_images(t, 1, 2, target_height=8, target_width=9)),
    ("image.extract_patches", "image.extract_patches", "img", lambda o, t: o.image.extract_patches(t, 3)),
    ("image.extract_patches_3d", "image.extract_patches_3d", "vol", lambda o, v: o.image.extract_patches_3d(v, 2)),
    ("image.gaussian_blur", "image.gaussian_blur", "img", lambda o, t: o.image.gaussian_blur(t)),
    ("image.hsv_to_rgb", "image.hsv_to_rgb", "img", lambda o, t: o.image.hsv_to_rgb(t)),
    ("image.rgb_to_hsv", "image.rgb_to_hsv", "img", lambda o, t: o.image.rgb_to_hsv(t)),
    ("image.rgb_to_grayscale", "image.rgb_to_grayscale", "img", lambda o, t: o.image.rgb_to_grayscale(t)),
    ("image.sobel_edges", "image.sobel_edges", "img", lambda o, t: o.image.sobel_edges(t)),
    ("image.ssim", "image.ssim", "img", lambda o, t: o.image.ssim(t, t * 0.9, filter_size=3)),
    ("image.map_coordinates", "image.map_coordinates", "xy",
     lambda o, x, y: o.image.map_coordinates(x[0], o.stack([y[0] * 2.0, y[1] * 3.0]), 1)),
    ("image.perspective_transform", "image.perspective_transform", "img",
     lambda o, t: o.image.perspective_transform(
         t, o.array([[0.0, 0.0], [5, 0], [0, 5], [5, 5]]), o.array([[0.0, 1.0], [5, 0], [1, 5], [5, 4]]))),
    ("image.scale_and_translate", "image.scale_and_translate", "img",
     lambda o, t: o.image.scale_and_translate(t, (BATCH, 8, 8, 3), [1.3, 1.3], [0.5, 0.5], (1, 2), "bilinear")),
    ("image.elastic_transform", "image.elastic_transform", "img", lambda o, t: o.image.elastic_transform(t, seed=1)),
]

# keras.ops functions that have no node form in a `.keras` file, each with why.
NOT_NODES = {
    "convert_to_numpy": "returns a NumPy array; Keras refuses symbolic tensors",
    "is_tensor": "returns a Python bool about its argument",
    "dtype": "returns a dtype name",
    "shape": "returns a Python tuple of dims",
    "ndim": "returns a Python int",
    "custom_gradient": "a decorator for Python functions",
    "vectorize": "wraps a Python function",
    "jvp": "takes a Python function, which a .keras file cannot hold",
    "map": "takes a Python function, which a .keras file cannot hold",
    "scan": "takes a Python function, which a .keras file cannot hold",
    "associative_scan": "takes a Python function, which a .keras file cannot hold",
    "cond": "takes Python functions, which a .keras file cannot hold",
    "switch": "takes Python functions, which a .keras file cannot hold",
    "fori_loop": "takes a Python function, which a .keras file cannot hold",
    "while_loop": "takes Python functions, which a .keras file cannot hold",
    "vectorized_map": "takes a Python function, which a .keras file cannot hold",
    "nonzero": "Keras 3.15's symbolic nonzero gives tensors not connected to the graph: no model can output them",
    "histogram": "Keras 3.15's Histogram node calls a torch-backend function that does not exist",
    "conv_transpose": "Keras 3.15's ConvTranspose node passes its arguments out of order and fails when run",
}

# Files Keras writes for these but cannot load itself: only the Keras-to-keramic direction is checked.
KERAS_CANNOT_LOAD = {
    "adaptive_average_pool": "Keras 3.15 reads output_size back as a list, which its node cannot use",
    "adaptive_max_pool": "Keras 3.15 reads output_size back as a list, which its node cannot use",
}

# Failing in keramic today, by case label, each with why: the sweep still fails when anything else
# breaks, and when one of these starts to pass (so the entry gets removed). Keras files loaded here:
KNOWN_LOAD_GAPS = {
    # Real Keras 3.15 (torch backend) computes these wrongly; keramic keeps the documented NumPy-style
    # results (as its sparsemax test does). Cases where both agree pass above (count_nonzero_flat, ...).
    "count_nonzero": "Keras transposes results of two or more dims ((2, 4) comes out as (4, 2))",
    "cross": "with no `axis`, Keras crosses along the first dim of size 3, not the last",
    "argpartition": "Keras casts the input to int32 before partitioning (floats in (0, 1) all tie at 0)",
    "sparsemax": "Keras's threshold sums every kept cumulative sum instead of the last one",
}
# keramic files loaded in Keras:
KNOWN_SAVE_GAPS = {}
# Op node configs keramic writes that differ from Keras's (files still load both ways):
KNOWN_CONFIG_GAPS = {}


def _build(lib, cases):
    """One Functional model in Keras or keramic whose outputs are every case's results, flattened;
    also the input names it takes and how many outputs each case gave."""
    used = [name for name in INPUTS if any(name in _input_names(case) for case in cases)]
    inputs = {name: lib.Input(INPUTS[name][0], dtype=INPUTS[name][1], name=name) for name in used}
    outputs, counts = [], []
    for case in cases:
        result = case[3](lib.ops, *[inputs[name] for name in _input_names(case)])
        flat = list(result) if isinstance(result, (list, tuple)) else [result]
        outputs.extend(flat)
        counts.append(len(flat))
    return lib.Model([inputs[name] for name in used], outputs), used, counts


def _input_names(case):
    names = case[2]
    return [names] if names in INPUTS else list(names)


def _predict(model, used):
    result = model.predict([INPUTS[name][2] for name in used], batch_size=BATCH, verbose=0)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _per_case(cases, counts, outputs):
    """Each case's label with its slice of the flat outputs."""
    start, sliced = 0, {}
    for case, count in zip(cases, counts):
        sliced[case[0]] = outputs[start:start + count]
        start += count
    return sliced


def _compare(case, expected, got):
    """Why `got` is not what Keras predicted for this case, or None."""
    if len(got) != len(expected):
        return f"{len(got)} outputs, Keras gives {len(expected)}"
    for want, have in zip(expected, got):
        want, have = np.asarray(want), np.asarray(have)
        if want.shape != have.shape or want.dtype != have.dtype:
            return f"{have.shape} {have.dtype}, Keras gives {want.shape} {want.dtype}"
        if case[1] in SHAPE_ONLY:
            continue
        if want.dtype == bool or np.issubdtype(want.dtype, np.integer):
            close = np.array_equal(want, have)
        else:
            close = np.allclose(have, want, rtol=1e-4, atol=1e-5, equal_nan=True)
        if not close:
            return f"values differ by up to {np.nanmax(np.abs(have - want))}"
    return None


def _keras_file(keras, cases, path):
    """A `.keras` file real Keras writes for these cases, and Keras's predictions by case label."""
    model, used, counts = _build(keras, cases)
    model.save(path)
    return path, _per_case(cases, counts, _predict(model, used))


def _op_entries(model):
    """The op nodes of a Functional config as files hold them: (class, config without the name)."""
    config = json.loads(json.dumps(model.get_config(), default=str))
    return [(entry["module"], entry["class_name"], {k: v for k, v in entry["config"].items() if k != "name"})
            for entry in config["layers"] if entry["module"].startswith("keras.src.ops")]


def _load_here(keras, cases, path, expected, scratch):
    """Problems by label when keramic loads the Keras file at `path`."""
    _, used, counts = _build(keras, cases)  # only the layout; the model itself is in the file
    got = _per_case(cases, counts, _predict(keramic.saving.load_model(path), used))
    return {case[0]: why for case in cases if (why := _compare(case, expected[case[0]], got[case[0]]))}


def _load_in_keras(keras, cases, path, expected, scratch):
    """Problems by label when Keras loads the file keramic writes (at `scratch`) for these cases."""
    model, used, counts = _build(keramic, cases)
    model.save(scratch)
    got = _per_case(cases, counts, _predict(keras.models.load_model(scratch), used))
    return {case[0]: why for case in cases if (why := _compare(case, expected[case[0]], got[case[0]]))}


def _groups(cases, size=12):
    return [cases[start:start + size] for start in range(0, len(cases), size)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Real Keras, and per group of cases the file it writes and what it predicts."""
    keras = pytest.importorskip("keras", reason="real Keras 3 is the interop reference; pip install keras")
    try:
        lazy_tensorflow = importlib.import_module("keras.src.utils.module_utils").tensorflow
    except (ImportError, AttributeError):  # another Keras layout: no shortcut, only slower
        lazy_tensorflow = None
    with pytest.MonkeyPatch.context() as patch:
        if lazy_tensorflow is not None and lazy_tensorflow.module is None:
            # Keras's serializer imports TensorFlow (~10 s) only to recognise TF objects; these models hold none.
            patch.setattr(lazy_tensorflow, "_available", False)
        folder = tmp_path_factory.mktemp("keras_files")
        files = [(cases, *_keras_file(keras, cases, folder / f"group{index}.keras"))
                 for index, cases in enumerate(_groups(CASES))]
        yield keras, files


def _sweep(keras, files, direction, tmp_path, skip=()):
    """Problems of every case, by label: a group at a time, then op by op for a group that raised."""
    problems = {}
    for index, (cases, path, expected) in enumerate(files):
        cases = [case for case in cases if case[1] not in skip]
        try:
            problems.update(direction(keras, cases, path, expected, tmp_path / f"group{index}.keras"))
            continue
        except Exception:  # which op broke the file: retry each alone
            pass
        for case in cases:
            try:
                single, single_expected = _keras_file(keras, [case], tmp_path / "keras_single.keras")
                problems.update(direction(keras, [case], single, single_expected, tmp_path / "single.keras"))
            except Exception as error:
                problems[case[0]] = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
    return problems


def _check(problems, known_gaps):
    unexpected = {label: why for label, why in problems.items() if label not in known_gaps}
    fixed = sorted(label for label in known_gaps if label not in problems)
    report = [f"{label}: {why}" for label, why in sorted(unexpected.items())]
    report += [f"{label}: passes now, remove it from the known gaps" for label in fixed]
    assert report == [], "\n".join(report)


def test_every_public_op_has_a_case_or_a_reason(reference):
    keras, _ = reference
    public = {name for name in dir(keras.ops) if not name.startswith("_")
              and callable(getattr(keras.ops, name)) and not inspect.ismodule(getattr(keras.ops, name))}
    public |= {f"image.{name}" for name in dir(keras.ops.image) if not name.startswith("_")}
    covered = {case[1] for case in CASES}
    assert sorted(public - covered - set(NOT_NODES)) == []
    assert sorted((covered | set(NOT_NODES)) - public) == []
    assert not covered & set(NOT_NODES)
    assert set(KERAS_CANNOT_LOAD) <= covered
    assert len({case[0] for case in CASES}) == len(CASES)


def test_keras_files_with_each_op_load_here_and_predict_the_same(reference, tmp_path):
    keras, files = reference
    _check(_sweep(keras, files, _load_here, tmp_path), KNOWN_LOAD_GAPS)


def test_op_node_configs_are_the_ones_keras_writes(reference):
    keras, _ = reference
    problems = {}
    for case in CASES:
        theirs = _op_entries(_build(keras, [case])[0])
        try:
            ours = _op_entries(_build(keramic, [case])[0])
        except Exception as error:
            problems[case[0]] = f"{type(error).__name__}: {error}"
            continue
        if ours != theirs:
            problems[case[0]] = f"keramic writes {[e for e in ours if e not in theirs]}, Keras {[e for e in theirs if e not in ours]}"
    _check(problems, KNOWN_CONFIG_GAPS)


def test_keramic_files_with_each_op_load_in_keras_and_predict_the_same(reference, tmp_path):
    keras, files = reference
    _check(_sweep(keras, files, _load_in_keras, tmp_path, skip=KERAS_CANNOT_LOAD), KNOWN_SAVE_GAPS)
