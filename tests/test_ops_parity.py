"""Eager parity of `keramic.ops` with real Keras 3 (torch backend): numbers, dtypes and shapes.

Table-driven: each test walks many cases in one process and reports every mismatch at once.
Expected values always come from real Keras, run on the same inputs.
"""

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(0)
DTYPES = ["float32", "float16", "int64", "int32", "int8", "uint8", "bool"]


def _array(shape, dtype, positive=False):
    if dtype == "bool":
        return RNG.random(shape) > 0.5
    if dtype.startswith(("int", "uint")):
        low = 1 if positive else (0 if dtype.startswith("uint") else -3)
        return RNG.integers(low, 5, shape).astype(dtype)
    values = RNG.normal(size=shape)
    return (np.abs(values) + 0.5 if positive else values).astype(dtype)


def _mismatch(keras, name, expected, got):
    """None when `got` matches Keras's `expected` in structure, dtype, shape and values."""
    expected_list = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    got_list = list(got) if isinstance(got, (list, tuple)) else [got]
    if len(expected_list) != len(got_list):
        return f"{name}: {len(expected_list)} outputs expected, got {len(got_list)}"
    for want, have in zip(expected_list, got_list):
        if not hasattr(want, "dtype") or isinstance(want, str):
            if want != have:
                return f"{name}: {want!r} expected, got {have!r}"
            continue
        want_dtype = keras.backend.standardize_dtype(want.dtype)
        have_dtype = keramic.backend.standardize_dtype(have.dtype) if hasattr(have, "dtype") else type(have).__name__
        if want_dtype != have_dtype:
            return f"{name}: dtype {want_dtype} expected, got {have_dtype}"
        want_np, have_np = keras.ops.convert_to_numpy(want), keramic.ops.convert_to_numpy(have)
        if want_np.shape != have_np.shape:
            return f"{name}: shape {want_np.shape} expected, got {have_np.shape}"
        loose = want_dtype in ("float16", "bfloat16")
        if want_np.dtype != bool:
            want_np, have_np = want_np.astype("float64"), have_np.astype("float64")
        if not np.allclose(have_np, want_np, rtol=1e-3 if loose else 1e-5, atol=1e-3 if loose else 1e-6, equal_nan=True):
            return f"{name}: values differ (max error {np.nanmax(np.abs(have_np - want_np))})"
    return None


def _run_cases(keras, cases, keras_namespace=None, keramic_namespace=None):
    keras_namespace = keras_namespace or keras.ops
    keramic_namespace = keramic_namespace or keramic.ops
    problems = []
    for label, name, args, kwargs in cases:
        try:
            expected = getattr(keras_namespace, name)(*args, **kwargs)
        except Exception:  # Keras rejects this input: keramic may do either, nothing to compare
            continue
        try:
            got = getattr(keramic_namespace, name)(*args, **kwargs)
        except Exception as error:
            problems.append(f"{label}: keramic raised {type(error).__name__}: {error}")
            continue
        problem = _mismatch(keras, label, expected, got)
        if problem:
            problems.append(problem)
    return problems


UNARY = (
    "sqrt exp exp2 expm1 log log2 log10 log1p sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh "
    "arctanh ceil floor reciprocal deg2rad rad2deg sinc cbrt absolute abs negative sign trunc copy conjugate real "
    "imag square round signbit isnan isinf isfinite isposinf isneginf logical_not nan_to_num ravel relu relu6 "
    "sigmoid softplus softsign silu swish log_sigmoid hard_sigmoid hard_silu hard_swish hard_tanh selu elu celu "
    "leaky_relu gelu tanh_shrink sparse_sigmoid squareplus hard_shrink soft_shrink erf erfc rsqrt softmax "
    "log_softmax glu zeros_like ones_like cumsum cumprod sort argsort count_nonzero flip fliplr flipud "
    "transpose median all any amax amin ptp var std mean sum prod max min argmax argmin nanmean nansum nanmax "
    "nanmin nanvar nanstd nanprod nancumsum nancumprod nanargmax nanargmin logsumexp diff tril triu trace diagonal "
    "ndim size angle fabs bitwise_invert bitwise_not isreal i0"
).split()
POSITIVE_ONLY = {"sqrt", "log", "log2", "log10", "log1p", "rsqrt", "reciprocal", "arccosh", "cbrt"}
UNIT_INTERVAL = {"arcsin", "arccos", "arctanh"}


def test_unary_ops_over_dtypes(keras):
    cases = []
    for name in UNARY:
        for dtype in DTYPES:
            if (name, dtype) == ("sparse_sigmoid", "uint8"):
                continue  # real Keras computes -1 in uint8 there (wraps around): nothing sound to compare
            x = _array((2, 3), dtype, positive=name in POSITIVE_ONLY)
            if name in UNIT_INTERVAL and dtype.startswith("float"):
                x = np.clip(x, -0.9, 0.9).astype(dtype)
            cases.append((f"{name}[{dtype}]", name, (x,), {}))
    assert len(cases) > 800
    assert _run_cases(keras, cases) == []


BINARY = (
    "add subtract multiply divide true_divide floor_divide mod fmod power maximum minimum fmax fmin equal "
    "not_equal greater greater_equal less less_equal logical_and logical_or logical_xor arctan2 hypot logaddexp "
    "logaddexp2 divide_no_nan nextafter isclose bitwise_and bitwise_or bitwise_xor left_shift right_shift "
    "bitwise_left_shift bitwise_right_shift gcd lcm ldexp matmul"
).split()
# (dtype of x1 with shape (2, 3), dtype of x2 with shape (3,) or None for a Python scalar)
PAIRS = [("float32", "float32"), ("int32", "int32"), ("bool", "bool"), ("int8", "float32"), ("int32", "float16"),
         ("uint8", "int8"), ("int8", "int64"), ("float16", None), ("float32", None), ("int32", None), ("int8", None)]


def test_binary_ops_over_dtype_pairs_with_broadcasting(keras):
    cases = []
    positive = {"gcd", "lcm", "left_shift", "right_shift", "bitwise_left_shift", "bitwise_right_shift", "power"}
    for name in BINARY:
        for first, second in PAIRS:
            x1 = _array((2, 3), first, positive=name in positive)
            if second is None:
                x2 = 2 if first.startswith(("int", "uint", "bool")) else 1.5
            else:
                x2 = _array((3, 3) if name == "matmul" else (3,), second, positive=True)
            cases.append((f"{name}[{first},{second}]", name, (x1, x2), {}))
    assert _run_cases(keras, cases) == []


def _f32(*shape):
    return _array(shape, "float32")


def _i32(*shape):
    return _array(shape, "int32")


A, B, M = _f32(2, 3, 4), _f32(4, 5), _f32(3, 3)
SPD = (M @ M.T + 3 * np.eye(3)).astype("float32")
IMAGES = RNG.random((2, 8, 8, 3)).astype("float32")

STRUCTURED = [
    ("sum", (A,), dict(axis=1)), ("sum", (A,), dict(axis=(0, 2), keepdims=True)), ("mean", (_i32(2, 3),), dict(axis=-1)),
    ("max", (A,), dict(axis=0, keepdims=True)), ("min", (A,), dict(axis=1, initial=-0.5)),
    ("argmax", (A,), dict(axis=1, keepdims=True)), ("argmin", (A,), {}), ("std", (A,), dict(axis=1)),
    ("var", (A,), dict(axis=(1, 2))), ("prod", (A,), dict(axis=1)), ("median", (A,), dict(axis=1)),
    ("quantile", (A, 0.3), dict(axis=1)), ("percentile", (A, 30.0), dict(axis=1)), ("quantile", (A, [0.2, 0.7]), {}),
    ("nanquantile", (A, 0.5), dict(axis=2, keepdims=True)), ("logsumexp", (A,), dict(axis=1)),
    ("average", (A,), dict(axis=1, weights=np.array([1.0, 2.0, 3.0], "float32"))), ("cumsum", (A,), dict(axis=1)),
    ("cumprod", (A,), {}), ("count_nonzero", (_i32(3, 4),), dict(axis=0)), ("all", (A > 0,), dict(axis=1)),
    ("any", (A > 0,), {}), ("reshape", (A, (6, -1)), {}), ("transpose", (A, (2, 0, 1)), {}),
    ("swapaxes", (A, 0, 2), {}), ("moveaxis", (A, 0, -1), {}), ("expand_dims", (A, (0, 2)), {}),
    ("squeeze", (_f32(1, 3, 1),), {}), ("squeeze", (_f32(1, 3, 1),), dict(axis=-1)), ("ravel", (A,), {}),
    ("broadcast_to", (_f32(3), (2, 3)), {}), ("concatenate", ([A, A],), dict(axis=-1)),
    ("concatenate", ([_i32(2, 3), _f32(2, 3)],), {}), ("stack", ([_f32(3), _f32(3)],), dict(axis=1)),
    ("hstack", ([_f32(2, 3), _f32(2, 1)],), {}), ("vstack", ([_f32(2, 3), _f32(1, 3)],), {}),
    ("dstack", ([_f32(2, 3), _f32(2, 3)],), {}), ("split", (A, 2), dict(axis=0)), ("split", (_f32(6, 2), [1, 4]), {}),
    ("array_split", (_f32(7, 2), 3), {}), ("tile", (_f32(2, 3), (2, 1)), {}), ("repeat", (_f32(2, 3), 2), dict(axis=1)),
    ("repeat", (_f32(2, 3), 3), {}), ("flip", (A,), dict(axis=1)), ("roll", (A, 1), dict(axis=2)), ("roll", (A, 3), {}),
    ("rot90", (_f32(2, 3),), {}), ("pad", (_f32(2, 3), ((1, 1), (2, 0))), {}),
    ("pad", (_f32(2, 3), ((1, 1), (2, 0))), dict(mode="reflect")), ("pad", (_f32(2, 3), ((1, 1), (2, 0))), dict(mode="edge")),
    ("pad", (_f32(2, 3), 1), {}), ("tril", (M,), dict(k=-1)), ("triu", (M,), {}), ("diag", (_f32(3),), {}),
    ("diag", (M,), dict(k=1)), ("diagflat", (_f32(2, 2),), {}), ("diagonal", (A,), dict(axis1=1, axis2=2)),
    ("trace", (M,), {}), ("diff", (A,), dict(n=2)), ("take", (A, np.array([[0, 2], [1, 1]])), dict(axis=1)),
    ("take", (A, np.array([0, 5, 7])), {}), ("take_along_axis", (A, np.argsort(A, axis=1)), dict(axis=1)),
    ("where", (A > 0, A, 0.0), {}), ("where", (A > 0,), {}), ("clip", (A, -0.5, 0.5), {}), ("clip", (_i32(3), 0, 2), {}),
    ("select", ([A > 0, A < -1], [A, A * 2]), {}), ("sort", (A,), dict(axis=1)), ("argsort", (_f32(5),), {}),
    ("searchsorted", (np.array([1.0, 2.0, 3.0], "float32"), np.array([2.5, 0.0], "float32")), {}),
    ("digitize", (_f32(5), np.array([-1.0, 0.0, 1.0], "float32")), {}), ("unique", (np.array([3, 1, 3, 2], "int32"),), {}),
    ("isin", (_i32(5), np.array([1, 2], "int32")), {}), ("bincount", (np.array([0, 1, 1, 3], "int32"),), {}),
    ("bincount", (np.array([0, 1, 1, 3], "int32"),), dict(weights=np.array([0.5, 1, 2, 3], "float32"), minlength=6)),
    ("matmul", (A, B), {}), ("matmul", (_i32(2, 3), _i32(3, 2)), {}),
    ("matmul", (_array((2, 3), "int8"), _array((3, 2), "int8")), {}), ("dot", (A, B), {}), ("dot", (_f32(3), _f32(3)), {}),
    ("tensordot", (A, _f32(3, 4, 2)), dict(axes=([1, 2], [0, 1]))), ("tensordot", (_f32(2, 3), _f32(3, 2)), dict(axes=1)),
    ("einsum", ("bij,jk->bik", A, B), {}), ("outer", (_f32(3), _f32(2)), {}), ("inner", (_f32(3), _f32(3)), {}),
    ("vdot", (_f32(3), _f32(3)), {}), ("kron", (_f32(2, 2), _f32(2, 1)), {}), ("cross", (_f32(4, 3), _f32(4, 3)), {}),
    ("zeros", ((2, 3),), {}), ("ones", ((2,),), dict(dtype="int32")), ("full", ((2, 2), 3.0), {}), ("full", ((2, 2), 3), {}),
    ("full_like", (A, 2), {}), ("zeros_like", (A,), dict(dtype="int8")), ("arange", (5,), {}), ("arange", (1.0, 4.0, 0.5), {}),
    ("arange", (2, 9, 3), dict(dtype="float32")), ("eye", (3,), {}), ("eye", (3, 4), dict(k=1)), ("identity", (3,), {}),
    ("tri", (3,), {}), ("linspace", (0.0, 1.0, 5), {}), ("linspace", (0.0, 1.0, 5), dict(endpoint=False)),
    ("logspace", (0.0, 2.0, 3), {}), ("geomspace", (1.0, 100.0, 3), {}), ("hamming", (5,), {}), ("hanning", (5,), {}),
    ("bartlett", (5,), {}), ("blackman", (5,), {}), ("kaiser", (5, 2.0), {}), ("vander", (_f32(3),), {}),
    ("meshgrid", (_f32(2), _f32(3)), {}), ("meshgrid", (_f32(2), _f32(3)), dict(indexing="ij")),
    ("histogram", (_f32(20),), dict(bins=4)), ("corrcoef", (_f32(3, 5),), {}), ("correlate", (_f32(5), _f32(3)), {}),
    ("correlate", (_f32(5), _f32(3)), dict(mode="same")), ("trapezoid", (_f32(5),), {}),
    ("nan_to_num", (np.array([np.nan, np.inf, -np.inf, 1.0], "float32"),), {}), ("nonzero", (_i32(3, 3),), {}),
    ("unravel_index", (np.array([5, 7], "int32"), (3, 4)), {}),
    ("one_hot", (np.array([0, 2, 1, 5]), 3), {}), ("one_hot", (np.array([[0, 2]]), 3), dict(axis=0)),
    ("multi_hot", (np.array([[0, 2], [1, 1]]), 4), {}), ("softmax", (A,), dict(axis=1)),
    ("log_softmax", (A,), dict(axis=(1, 2))), ("normalize", (A,), {}), ("moments", (A, (0, 1)), {}),
    ("moments", (A, (1,)), dict(keepdims=True)), ("gelu", (A,), dict(approximate=False)),
    ("leaky_relu", (A,), dict(negative_slope=0.1)), ("elu", (A,), dict(alpha=0.5)),
    ("batch_normalization", (A, _f32(4), np.abs(_f32(4)), -1), dict(offset=_f32(4), scale=_f32(4))),
    ("layer_normalization", (A,), {}), ("layer_normalization", (A, _f32(4), _f32(4)), dict(epsilon=1e-5)),
    ("rms_normalization", (A,), {}), ("glu", (_f32(2, 4),), {}), ("threshold", (A, 0.1, -1.0), {}),
    ("squareplus", (A,), dict(b=2)), ("celu", (A,), {}),
    ("conv", (_f32(2, 8, 3), _f32(3, 3, 4)), {}), ("conv", (IMAGES, _f32(3, 3, 3, 5)), dict(padding="same", strides=2)),
    ("conv", (IMAGES, _f32(3, 3, 3, 5)), dict(dilation_rate=2)), ("conv", (IMAGES, _f32(3, 3, 1, 6)), {}),
    ("depthwise_conv", (IMAGES, _f32(3, 3, 3, 2)), dict(padding="same")),
    ("separable_conv", (IMAGES, _f32(3, 3, 3, 2), _f32(1, 1, 6, 4)), {}),
    ("conv_transpose", (IMAGES, _f32(3, 3, 5, 3)), dict(strides=2, padding="same")),
    ("conv_transpose", (IMAGES, _f32(3, 3, 5, 3)), dict(strides=2)),
    ("conv_transpose", (IMAGES, _f32(2, 2, 5, 3)), dict(strides=2, padding="same")),
    ("conv_transpose", (_f32(2, 5, 3), _f32(4, 4, 3)), dict(strides=3, padding="same")),
    ("max_pool", (IMAGES, 2), {}), ("max_pool", (IMAGES, 3), dict(strides=2, padding="same")),
    ("average_pool", (IMAGES, (2, 2)), {}), ("average_pool", (IMAGES[:, :3, :3], 2), dict(strides=1, padding="same")),
    ("max_pool", (_f32(2, 7, 3), 2), {}), ("adaptive_average_pool", (IMAGES, (2, 2)), {}),
    ("adaptive_max_pool", (IMAGES, (3, 3)), {}), ("depth_to_space", (_f32(1, 2, 2, 8), 2), {}),
    ("space_to_depth", (_f32(1, 4, 4, 2), 2), {}),
    ("binary_crossentropy", (RNG.random((2, 3)).astype("float32").round(), RNG.random((2, 3)).astype("float32")), {}),
    ("binary_crossentropy", (RNG.random((2, 3)).astype("float32").round(), _f32(2, 3)), dict(from_logits=True)),
    ("categorical_crossentropy", (np.eye(3)[[0, 2]].astype("float32"), RNG.random((2, 3)).astype("float32")), {}),
    ("sparse_categorical_crossentropy", (np.array([0, 2]), _f32(2, 3)), dict(from_logits=True)),
    ("dot_product_attention", (_f32(2, 4, 2, 8), _f32(2, 4, 2, 8), _f32(2, 4, 2, 8)), {}),
    ("dot_product_attention", (_f32(2, 4, 2, 8), _f32(2, 4, 2, 8), _f32(2, 4, 2, 8)), dict(is_causal=True)),
    ("psnr", (_f32(2, 3), _f32(2, 3), 1.0), {}),
    ("cholesky", (SPD,), {}), ("det", (M,), {}), ("inv", (SPD,), {}), ("solve", (SPD, _f32(3, 2)), {}),
    ("solve_triangular", (np.tril(SPD), _f32(3, 2)), dict(lower=True)), ("norm", (A,), {}),
    ("norm", (M,), dict(ord="fro")), ("norm", (A,), dict(axis=-1, ord=1)), ("norm", (M,), dict(ord=2, axis=(0, 1))),
    ("pinv", (_f32(3, 2),), {}), ("matrix_rank", (M,), {}), ("slogdet", (M,), {}), ("logdet", (SPD,), {}),
    ("eigh", (SPD,), {}), ("lstsq", (_f32(4, 3), _f32(4, 2)), {}),
    ("cholesky_inverse", (np.linalg.cholesky(SPD).astype("float32"),), {}),
    ("erfinv", (np.clip(_f32(5), -0.9, 0.9),), {}), ("top_k", (A, 2), {}), ("in_top_k", (np.array([0, 2]), _f32(2, 4), 2), {}),
    ("segment_sum", (_f32(4, 2), np.array([0, 0, 1, 2])), {}),
    ("segment_max", (_f32(4, 2), np.array([0, 0, 1, 2])), dict(num_segments=3)),
    ("extract_sequences", (_f32(2, 10), 4, 2), {}), ("rfft", (_f32(2, 8),), {}), ("irfft", ((_f32(2, 5), _f32(2, 5)),), {}),
    ("fft", ((_f32(2, 8), _f32(2, 8)),), {}), ("fft2", ((_f32(2, 4, 4), _f32(2, 4, 4)),), {}), ("cdist", (_f32(3, 2), _f32(4, 2)), {}),
    ("stft", (_f32(2, 32), 8, 4, 8), {}), ("stft", (_f32(32), 8, 4, 16), dict(window="hamming", center=False)),
    ("cast", (A, "int32"), {}), ("saturate_cast", (_f32(5) * 500, "int8"), {}), ("slice", (A, (0, 1, 1), (2, 2, 2)), {}),
    ("slice_update", (A, (0, 1, 1), _f32(1, 2, 2)), {}), ("scatter", (np.array([[0, 1], [1, 0]]), _f32(2), (2, 2)), {}),
    ("scatter_update", (_f32(3, 2), np.array([[0], [2]]), _f32(2, 2)), {}), ("unstack", (A,), dict(axis=1)),
    ("convert_to_tensor", ([1, 2],), {}), ("convert_to_tensor", (3.0,), {}), ("convert_to_tensor", (np.array([1.0, 2.0]),), {}),
    ("shape", (A,), {}), ("dtype", (A,), {}), ("stop_gradient", (A,), {}), ("get_item", (A, (slice(None), 0)), {}),
    ("ndim", (A,), {}), ("rearrange", (A, "b h w -> w (b h)"), {}), ("rearrange", (A, "b h (w c) -> c b h w"), dict(c=2)),
]
# Not compared, as real Keras 3.15 (torch) differs from NumPy there: pad(mode="symmetric"), take with
# negative indices and no axis, average_pool(padding="same") with strides > 1, sparsemax.


def test_structured_ops_match_keras(keras):
    cases = [(f"{name}{sorted(kwargs)}", name, args, kwargs) for name, args, kwargs in STRUCTURED]
    assert _run_cases(keras, cases) == []


IMAGE_CASES = [
    ("resize", (IMAGES, (4, 4)), {}), ("resize", (IMAGES, (16, 12)), dict(interpolation="nearest")),
    ("resize", (IMAGES, (5, 5)), dict(interpolation="bicubic")), ("resize", (IMAGES, (4, 4)), dict(antialias=True)),
    ("rgb_to_grayscale", (IMAGES,), {}), ("rgb_to_hsv", (IMAGES,), {}), ("hsv_to_rgb", (IMAGES,), {}),
    ("extract_patches", (IMAGES, 2), {}), ("extract_patches", (IMAGES, 3), dict(strides=2, padding="same")),
    ("crop_images", (IMAGES,), dict(top_cropping=1, left_cropping=2, target_height=4, target_width=3)),
    ("pad_images", (IMAGES,), dict(top_padding=1, left_padding=2, target_height=12, target_width=11)),
    *[("affine_transform", (IMAGES, np.array([[1.1, 0.2, 0.5, -0.1, 0.9, 0.25, 0, 0], [0.8, -0.3, 1.5, 0.3, 1.2, -0.6, 0, 0]],
                                              "float32")), dict(interpolation=interpolation, fill_mode=mode, fill_value=0.3))
      for interpolation in ("nearest", "bilinear") for mode in ("constant", "nearest", "wrap", "mirror", "reflect")],
    *[("map_coordinates", (_f32(4, 5), (RNG.random((2, 7)) * 8 - 2).astype("float32"), order), dict(fill_mode=mode, fill_value=0.5))
      for order in (0, 1) for mode in ("constant", "nearest", "wrap", "mirror", "reflect")],
]


def test_image_ops_match_keras(keras):
    cases = [(f"image.{name}{sorted(kwargs)}", name, args, kwargs) for name, args, kwargs in IMAGE_CASES]
    assert _run_cases(keras, cases, keras.ops.image, keramic.ops.image) == []


def test_every_keras_op_name_exists(keras):
    missing = [name for name in dir(keras.ops) if not name.startswith("_") and not hasattr(keramic.ops, name)]
    assert missing == []
    missing_image = [name for name in dir(keras.ops.image) if not name.startswith("_") and not hasattr(keramic.ops.image, name)]
    assert missing_image == []
    missing_linalg = [name for name in dir(keras.ops.linalg) if not name.startswith("_") and not hasattr(keramic.ops.linalg, name)]
    assert missing_linalg == []


def test_result_type_matches_keras_for_all_pairs(keras):
    dtypes = ["bool", "uint8", "uint16", "uint32", "int8", "int16", "int32", "int64", "bfloat16", "float16",
              "float32", "float64", int, float, bool]
    problems = []
    for a in dtypes:
        for b in dtypes:
            want, have = keras.backend.result_type(a, b), keramic.backend.result_type(a, b)
            if want != have:
                problems.append((a, b, want, have))
    assert problems == []
    assert keramic.ops.result_type("int8", "float16", float) == keras.backend.result_type("int8", "float16", float)


def test_control_flow_and_gradients_match_keras(keras):
    import torch

    ops = keramic.ops
    assert int(ops.fori_loop(0, 5, lambda i, v: v + i, 0)) == int(keras.ops.fori_loop(0, 5, lambda i, v: v + i, 0))
    got = ops.while_loop(lambda a, b: a < 10, lambda a, b: (a + 1, b * 2), (0, 1))
    want = keras.ops.while_loop(lambda a, b: a < 10, lambda a, b: (a + 1, b * 2), (0, 1))
    assert [int(v) for v in got] == [int(v) for v in want]
    xs = _f32(4, 2)
    carry, ys = ops.scan(lambda c, x: (c + x, c * x), np.zeros(2, "float32"), xs)
    kcarry, kys = keras.ops.scan(lambda c, x: (c + x, c * x), keras.ops.zeros(2), xs)
    np.testing.assert_allclose(ops.convert_to_numpy(carry), keras.ops.convert_to_numpy(kcarry), rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(ys), keras.ops.convert_to_numpy(kys), rtol=1e-6)
    got = ops.associative_scan(lambda a, b: a + b, xs, axis=0)
    want = keras.ops.associative_scan(lambda a, b: a + b, xs, axis=0)
    np.testing.assert_allclose(ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want), rtol=1e-6)
    got = ops.map(lambda row: row * 2, xs)
    np.testing.assert_allclose(ops.convert_to_numpy(got), keras.ops.convert_to_numpy(keras.ops.map(lambda r: r * 2, xs)))
    assert float(ops.cond(True, lambda: 1.0, lambda: 2.0)) == 1.0
    assert float(ops.switch(5, [lambda x: x, lambda x: x * 3], 2.0)) == float(keras.ops.switch(5, [lambda x: x, lambda x: x * 3], 2.0))

    @ops.custom_gradient
    def clipped_square(x):
        def grad(upstream):
            return upstream * 10.0

        return x * x, grad

    x = torch.tensor([1.0, 2.0], requires_grad=True)
    clipped_square(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [10.0, 10.0])
    y = torch.tensor([3.0], requires_grad=True)
    (ops.stop_gradient(y) * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [3.0])


def _ctc_beam_cases():
    cases = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        batch, steps, classes = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(2, 7))
        inputs = (rng.normal(size=(batch, steps, classes)) * rng.choice([0.5, 1.0, 3.0])).astype("float32")
        if seed % 10 == 0:
            inputs = np.zeros_like(inputs)  # every path ties: Keras's order among equals
        elif seed % 10 == 1:
            inputs = np.round(inputs)  # some ties
        lengths = rng.integers(1, steps + 1, size=batch).astype("int32")
        beam_width = int(rng.integers(1, 12))
        top_paths = int(rng.integers(1, beam_width + 3))  # past the beam: -inf fillers, as Keras
        mask_index = [0, classes - 1, None, int(rng.integers(0, classes))][seed % 4]
        kwargs = dict(strategy="beam_search", beam_width=beam_width, top_paths=top_paths, mask_index=mask_index)
        cases.append((f"ctc_decode beam seed={seed}", "ctc_decode", (inputs, lengths), kwargs))
    return cases


def test_ctc_decode_beam_search_matches_keras(keras):
    """Paths, their order (ties included) and log-probabilities as Keras's beam search."""
    assert _run_cases(keras, _ctc_beam_cases()) == []
