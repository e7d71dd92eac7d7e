"""Every tf.keras 2.21 layer class that has a Keras 3 counterpart: a one-layer model tf.keras
writes (whole-model `.h5`, `to_json()` + `save_weights`) loads in keramic and predicts what
tf.keras predicted; where the layer has trainable weights and draws no random numbers, the loaded
`.h5` also resumes training (one SGD step) as tf.keras does.

One tf.keras subprocess writes every case (TensorFlow cannot share a process with torch). Each
test walks every case, collects the mismatches, and asserts once. The cases keramic cannot yet
match are listed in `KNOWN_GAPS`, each with its reason.
"""

import importlib.util
import json

import numpy as np
import pytest

import keramic
from helpers import run_tf_keras

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        importlib.util.find_spec("tf_keras") is None or importlib.util.find_spec("tensorflow") is None,
        reason="tf.keras 2 is the reference here: pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0",
    ),
]

ATOL = 1e-5
# case -> why keramic does not predict what tf.keras does there; the sweep leaves them out.
KNOWN_GAPS = {}

# Writes argv[1]/<case>/{model.h5, config.json, weights.h5, data.npz} for every case, and
# argv[1]/cases.json (case -> whether it trains). data.npz: inputs x0.., predictions p0..; for
# training cases also targets y0.., the step's loss and the weights after it (w0.., layer order).
TF_WRITER = r'''
import json, os, sys
import numpy as np
import tensorflow as tf
import tf_keras as k
L = k.layers
tf.config.run_functions_eagerly(True)  # tracing a graph per model costs more than it saves here
tf.random.set_seed(0)
rng = np.random.default_rng(0)

def f32(*shape):
    return rng.normal(size=shape).astype("float32")

CASES = {}

def case(name, make_layer, *shapes, train=True, dtype="float32", data=None):
    """A Functional model: Input(s) of `shapes` -> the layer -> output(s)."""
    CASES[name] = (make_layer, shapes, train, dtype, data)

# core
case("dense", lambda: L.Dense(3, activation="tanh", kernel_regularizer="l2"), (4,))
case("dense_configured", lambda: L.Dense(3, kernel_initializer=k.initializers.VarianceScaling(2.0, distribution="normal"),
                                        kernel_constraint=k.constraints.MaxNorm(0.8), bias_constraint="non_neg",
                                        bias_regularizer=k.regularizers.L1L2(0.01, 0.02), activity_regularizer="l1"), (4,))
case("dense_3d", lambda: L.Dense(3, use_bias=False), (2, 4))
case("einsum_dense", lambda: L.EinsumDense("abc,cd->abd", output_shape=(2, 3), bias_axes="d", activation="relu"), (2, 4))
case("activation_selu", lambda: L.Activation("selu"), (4,))
case("activation_swish", lambda: L.Activation("swish"), (4,))
case("activation_gelu", lambda: L.Activation("gelu"), (4,))
case("activation_hard_sigmoid", lambda: L.Activation("hard_sigmoid"), (4,))
case("identity", lambda: L.Identity(), (4,))
case("activity_regularization", lambda: L.ActivityRegularization(l1=0.01, l2=0.02), (4,))
case("lambda", lambda: L.Lambda(lambda t: t * 2.0 + 1.0), (4,))
case("masking_pooled", lambda: [L.Masking(mask_value=0.5), L.GlobalAveragePooling1D()], (4, 3),
     data=lambda: np.where(np.arange(4)[None, :, None] >= 2, 0.5, f32(2, 4, 3)).astype("float32"))
# reshaping
case("flatten", lambda: L.Flatten(), (2, 3))
case("reshape", lambda: L.Reshape((3, -1)), (2, 6))
case("permute", lambda: L.Permute((2, 1)), (2, 3))
case("repeat_vector", lambda: L.RepeatVector(3), (4,))
case("cropping1d", lambda: L.Cropping1D((1, 2)), (6, 2))
case("cropping2d", lambda: L.Cropping2D(((1, 0), (0, 2))), (5, 5, 2))
case("cropping3d", lambda: L.Cropping3D(((1, 0), (0, 1), (1, 1))), (4, 4, 4, 1))
case("zero_padding1d", lambda: L.ZeroPadding1D((1, 2)), (3, 2))
case("zero_padding2d", lambda: L.ZeroPadding2D(((1, 0), (2, 1))), (3, 3, 2))
case("zero_padding3d", lambda: L.ZeroPadding3D((1, 0, 2)), (2, 2, 2, 1))
case("upsampling1d", lambda: L.UpSampling1D(3), (3, 2))
case("upsampling2d_bilinear", lambda: L.UpSampling2D((2, 3), interpolation="bilinear"), (3, 3, 2))
case("upsampling2d_nearest", lambda: L.UpSampling2D(2), (3, 3, 2))
case("flatten_channels_first", lambda: L.Flatten(data_format="channels_first"), (2, 3, 2), train=False)
case("cropping2d_channels_first", lambda: L.Cropping2D((1, 1), data_format="channels_first"), (2, 4, 4), train=False)
case("zero_padding2d_channels_first", lambda: L.ZeroPadding2D((1, 2), data_format="channels_first"), (2, 2, 2), train=False)
case("upsampling2d_channels_first", lambda: L.UpSampling2D(2, data_format="channels_first"), (2, 2, 3), train=False)
case("global_average_pooling2d_channels_first", lambda: L.GlobalAveragePooling2D(data_format="channels_first"), (2, 3, 3),
     train=False)
case("upsampling3d", lambda: L.UpSampling3D((2, 1, 2)), (2, 2, 2, 1))
# convolutions
case("conv1d", lambda: L.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu"), (6, 2))
case("conv1d_strided", lambda: L.Conv1D(2, 2, strides=2, padding="same"), (7, 2))
case("conv2d", lambda: L.Conv2D(3, (3, 2), strides=(2, 1), padding="same"), (6, 6, 2))
case("conv2d_groups", lambda: L.Conv2D(4, 3, groups=2), (5, 5, 4), train=False)  # TF has no CPU gradient
case("conv3d", lambda: L.Conv3D(2, 2, padding="same", dilation_rate=1), (3, 3, 3, 2))
case("conv1d_transpose", lambda: L.Conv1DTranspose(3, 3, strides=2, padding="same"), (4, 2))
case("conv2d_transpose", lambda: L.Conv2DTranspose(3, 3, strides=2, output_padding=1), (3, 3, 2))
case("conv3d_transpose", lambda: L.Conv3DTranspose(2, 2, strides=2), (2, 2, 2, 1))
case("separable_conv1d", lambda: L.SeparableConv1D(3, 3, depth_multiplier=2, padding="same"), (6, 2))
case("separable_conv2d", lambda: L.SeparableConv2D(3, 2, depth_multiplier=2, strides=2, activation="tanh"), (6, 6, 2))
case("depthwise_conv1d", lambda: L.DepthwiseConv1D(3, depth_multiplier=2), (6, 2))
case("depthwise_conv2d", lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False), (5, 5, 2))
# pooling
case("max_pooling1d", lambda: L.MaxPooling1D(3, strides=2, padding="same"), (7, 2), train=False)
case("average_pooling1d", lambda: L.AveragePooling1D(2), (6, 2), train=False)
case("max_pooling2d", lambda: L.MaxPooling2D((2, 3), padding="same"), (5, 5, 2), train=False)
case("average_pooling2d", lambda: L.AveragePooling2D(3, strides=1, padding="same"), (4, 4, 2), train=False)
case("max_pooling3d", lambda: L.MaxPooling3D(2), (4, 4, 4, 1), train=False)
case("average_pooling3d", lambda: L.AveragePooling3D(2, strides=1), (3, 3, 3, 1), train=False)
case("global_max_pooling1d", lambda: L.GlobalMaxPooling1D(keepdims=True), (5, 2), train=False)
case("global_average_pooling1d", lambda: L.GlobalAveragePooling1D(), (5, 2), train=False)
case("global_max_pooling2d", lambda: L.GlobalMaxPooling2D(), (3, 3, 2), train=False)
case("global_average_pooling2d", lambda: L.GlobalAveragePooling2D(keepdims=True), (3, 3, 2), train=False)
case("global_max_pooling3d", lambda: L.GlobalMaxPooling3D(keepdims=True), (2, 2, 2, 2), train=False)
case("global_average_pooling3d", lambda: L.GlobalAveragePooling3D(), (2, 2, 2, 2), train=False)
# recurrent
case("simple_rnn", lambda: L.SimpleRNN(3, return_sequences=True, go_backwards=True), (4, 2))
case("gru", lambda: L.GRU(3), (4, 2))
case("gru_dropout_unrolled", lambda: L.GRU(3, dropout=0.2, recurrent_dropout=0.1, unroll=True), (4, 2), train=False)
case("gru_reset_before", lambda: L.GRU(3, reset_after=False, return_sequences=True, activation="relu"), (4, 2))
case("lstm", lambda: L.LSTM(3, unit_forget_bias=False, recurrent_activation="hard_sigmoid"), (4, 2))
case("lstm_state", lambda: L.LSTM(3, return_state=True), (4, 2), train=False)
case("rnn_cell", lambda: L.RNN(L.LSTMCell(3)), (4, 2))
case("rnn_stacked_cells", lambda: L.RNN(L.StackedRNNCells([L.SimpleRNNCell(3), L.GRUCell(2)]), return_sequences=True), (4, 2))
case("bidirectional_concat", lambda: L.Bidirectional(L.LSTM(2, return_sequences=True)), (4, 2))
case("bidirectional_sum", lambda: L.Bidirectional(L.GRU(2), merge_mode="sum"), (4, 2))
case("bidirectional_backward", lambda: L.Bidirectional(L.SimpleRNN(2), backward_layer=L.SimpleRNN(2, go_backwards=True), merge_mode="mul"), (4, 2))
case("conv_lstm1d", lambda: L.ConvLSTM1D(2, 2, padding="same"), (3, 4, 2))
case("conv_lstm2d", lambda: L.ConvLSTM2D(2, 2, return_sequences=True), (2, 3, 3, 1))
case("conv_lstm3d", lambda: L.ConvLSTM3D(1, 2), (2, 2, 2, 2, 1))
case("time_distributed", lambda: L.TimeDistributed(L.Conv2D(2, 2)), (2, 3, 3, 1))
case("time_distributed_dense", lambda: L.TimeDistributed(L.Dense(2)), (3, 4))
# normalization
case("layer_normalization", lambda: L.LayerNormalization(epsilon=1e-4, center=False), (3, 4))
case("layer_normalization_axes", lambda: L.LayerNormalization(axis=[1, 2]), (3, 4))
case("batch_normalization", lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-2), (4,))
case("batch_normalization_axis1", lambda: L.BatchNormalization(axis=1, scale=False), (3, 4))
case("group_normalization", lambda: L.GroupNormalization(groups=2, epsilon=1e-3), (3, 4))
case("unit_normalization", lambda: L.UnitNormalization(axis=[1, 2]), (2, 3), train=False)
case("spectral_normalization", lambda: L.SpectralNormalization(L.Dense(3), power_iterations=2), (4,))
# attention (two inputs: query, value)
case("attention", lambda: L.Attention(use_scale=True, score_mode="concat"), (3, 4), (2, 4))
case("attention_dot", lambda: L.Attention(dropout=0.0), (3, 4), (2, 4), train=False)
case("additive_attention", lambda: L.AdditiveAttention(use_scale=False), (3, 4), (2, 4), train=False)
case("additive_attention_scaled", lambda: L.AdditiveAttention(), (3, 4), (2, 4))
case("multi_head_attention_key", lambda: L.MultiHeadAttention(num_heads=1, key_dim=3, use_bias=False, attention_axes=(1,)),
     (3, 4), (2, 4), (2, 5))
case("multi_head_attention", lambda: L.MultiHeadAttention(num_heads=2, key_dim=2, value_dim=3, output_shape=5), (3, 4), (2, 4))
# merging
case("add", lambda: L.Add(), (4,), (4,), train=False)
case("subtract", lambda: L.Subtract(), (4,), (4,), train=False)
case("multiply", lambda: L.Multiply(), (4,), (4,), (4,), train=False)
case("average", lambda: L.Average(), (4,), (4,), train=False)
case("maximum", lambda: L.Maximum(), (4,), (4,), train=False)
case("minimum", lambda: L.Minimum(), (4,), (4,), train=False)
case("concatenate", lambda: L.Concatenate(axis=1), (2, 3), (4, 3), train=False)
case("dot", lambda: L.Dot(axes=1, normalize=True), (4,), (4,), train=False)
case("dot_axes", lambda: L.Dot(axes=(2, 2)), (3, 4), (2, 4), train=False)
# embedding
case("embedding", lambda: L.Embedding(10, 3, input_length=4), (4,), dtype="int32", data=lambda: rng.integers(0, 10, (2, 4)))
case("embedding_masked_lstm", lambda: [L.Embedding(10, 3, mask_zero=True), L.LSTM(2)], (4,), dtype="int32",
     data=lambda: np.array([[3, 1, 0, 0], [5, 9, 2, 0]]))
case("embedding_masked", lambda: [L.Embedding(10, 3, mask_zero=True), L.GlobalAveragePooling1D()], (4,), dtype="int32",
     data=lambda: np.array([[3, 1, 0, 0], [5, 9, 2, 0]]))
# activation layers
case("relu", lambda: L.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2), (4,), train=False)
case("leaky_relu", lambda: L.LeakyReLU(alpha=0.2), (4,), train=False)
case("prelu", lambda: L.PReLU(shared_axes=[1]), (3, 4))
case("elu", lambda: L.ELU(alpha=0.5), (4,), train=False)
case("softmax", lambda: L.Softmax(axis=1), (3, 4), train=False)
case("thresholded_relu", lambda: L.ThresholdedReLU(theta=0.3), (4,), train=False)
# regularization: identity at inference
case("dropout", lambda: L.Dropout(0.5, noise_shape=(None, 1, 4), seed=3), (3, 4), train=False)
case("spatial_dropout1d", lambda: L.SpatialDropout1D(0.3), (3, 4), train=False)
case("spatial_dropout2d", lambda: L.SpatialDropout2D(0.3), (3, 3, 2), train=False)
case("spatial_dropout3d", lambda: L.SpatialDropout3D(0.3), (2, 2, 2, 2), train=False)
case("gaussian_dropout", lambda: L.GaussianDropout(0.2), (4,), train=False)
case("gaussian_noise", lambda: L.GaussianNoise(0.2), (4,), train=False)
case("alpha_dropout", lambda: L.AlphaDropout(0.2), (4,), train=False)
# preprocessing
case("rescaling", lambda: L.Rescaling(1 / 127.5, offset=-1.0), (3, 3, 2), train=False)
case("normalization", lambda: L.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.25]), (3, 2), train=False)
case("normalization_invert", lambda: L.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.25], invert=True), (3, 2), train=False)
case("normalization_adapted", lambda: L.Normalization(axis=-1), (3, 2), train=False)
case("center_crop", lambda: L.CenterCrop(2, 3), (4, 5, 2), train=False)
case("resizing", lambda: L.Resizing(4, 6, interpolation="bilinear"), (3, 3, 2), train=False)
case("resizing_crop", lambda: L.Resizing(2, 2, interpolation="nearest", crop_to_aspect_ratio=True), (3, 5, 1), train=False)
case("category_encoding", lambda: L.CategoryEncoding(num_tokens=5, output_mode="count"), (3,), dtype="int32", train=False,
     data=lambda: rng.integers(0, 5, (2, 3)))
case("discretization", lambda: L.Discretization(bin_boundaries=[-0.5, 0.0, 0.5]), (4,), train=False)
case("discretization_one_hot", lambda: L.Discretization(bin_boundaries=[0.0], output_mode="one_hot"), (), train=False,
     data=lambda: f32(3))
case("category_encoding_multi_hot", lambda: L.CategoryEncoding(num_tokens=4, output_mode="multi_hot"), (2,), dtype="int32",
     train=False, data=lambda: np.array([[0, 3], [2, 2]]))
case("hashing", lambda: L.Hashing(num_bins=5), (3,), dtype="int64", train=False, data=lambda: rng.integers(0, 100, (2, 3)))
case("integer_lookup", lambda: L.IntegerLookup(vocabulary=[7, 3, 11]), (3,), dtype="int64", train=False,
     data=lambda: np.array([[7, 3, 5], [11, 11, 0]]))
case("string_lookup", lambda: L.StringLookup(vocabulary=["a", "b", "c"], output_mode="one_hot"), (1,), dtype="string", train=False,
     data=lambda: np.array([["b"], ["z"]]))
case("string_lookup_int", lambda: L.StringLookup(vocabulary=["a", "b", "c"], num_oov_indices=2, mask_token=""), (3,),
     dtype="string", train=False, data=lambda: np.array([["b", "", "z"], ["c", "a", "q"]]))
case("integer_lookup_invert", lambda: L.IntegerLookup(vocabulary=[7, 3, 11], invert=True), (3,), dtype="int64", train=False,
     data=lambda: np.array([[1, 2, 3], [0, 3, 1]]))
case("hashing_strings", lambda: L.Hashing(num_bins=7, salt=[3, 5]), (2,), dtype="string", train=False,
     data=lambda: np.array([["cat", "dog"], ["", "emu"]]))
case("hashed_crossing", lambda: L.HashedCrossing(num_bins=6), (), (), dtype="int64", train=False,
     data=lambda: rng.integers(0, 50, (2,)))
case("text_vectorization", lambda: L.TextVectorization(vocabulary=["the", "cat", "sat"], output_sequence_length=4), (1,),
     dtype="string", train=False, data=lambda: np.array([["The cat sat"], ["a dog, the end"]]))
case("random_flip", lambda: L.RandomFlip("horizontal"), (3, 3, 2), train=False)
case("random_rotation", lambda: L.RandomRotation(0.2), (3, 3, 2), train=False)
case("random_zoom", lambda: L.RandomZoom(0.2), (3, 3, 2), train=False)
case("random_translation", lambda: L.RandomTranslation(0.2, 0.1), (3, 3, 2), train=False)
case("random_contrast", lambda: L.RandomContrast(0.3), (3, 3, 2), train=False)
case("random_brightness", lambda: L.RandomBrightness(0.2), (3, 3, 2), train=False)
case("random_crop", lambda: L.RandomCrop(2, 2), (4, 4, 2), train=False)

# Sequential models, as tf.keras users mostly wrote them: the first layer given `input_shape`
# (its config then holds `batch_input_shape`), or an Input first.
SEQUENTIAL = {
    "sequential_input_shape": (lambda: k.Sequential([L.Conv1D(3, 2, input_shape=(5, 2)), L.BatchNormalization(),
                                                     L.LSTM(2), L.Dense(1)]), (5, 2)),
    "sequential_input": (lambda: k.Sequential([k.Input((4, 4, 1)), L.Conv2D(2, 2), L.MaxPooling2D(), L.Flatten(),
                                               L.Dropout(0.0), L.Dense(2, activation="softmax")]), (4, 4, 1)),
}
for name, (build, shape) in SEQUENTIAL.items():
    CASES[name] = (build, (shape,), True, "float32", None)

def random_values(weight):
    if "variance" in weight.name:
        return rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype.as_numpy_dtype)
    if weight.dtype.is_integer:
        return np.full(weight.shape, 7, weight.dtype.as_numpy_dtype)
    return rng.normal(scale=0.5, size=weight.shape).astype(weight.dtype.as_numpy_dtype)

def legacy_order(model):
    return [w.numpy() for layer in model.layers for w in layer.trainable_weights + layer.non_trainable_weights]

manifest = {}
for name in sys.argv[2:] or CASES:  # a run may name a few cases
    make_layer, shapes, train, dtype, data = CASES[name]
    xs = [np.asarray(data()) if data else f32(2, *shape) for shape in shapes]
    made = make_layer()
    if name == "normalization_adapted":
        made.adapt(f32(8, 3, 2) * 3.0 + 1.0)
    if isinstance(made, k.Model):
        model = made
    else:
        inputs = [k.Input(shape, dtype=dtype, name=f"in{i}") for i, shape in enumerate(shapes)]
        h = inputs if len(inputs) > 1 else inputs[0]
        for layer in made if isinstance(made, list) else [made]:
            h = layer(*h) if isinstance(layer, L.MultiHeadAttention) else layer(h)
        model = k.Model(inputs, h)
    if name != "normalization_adapted":
        model.set_weights([random_values(w) for w in model.weights])
    model.compile(k.optimizers.SGD(0.1), "mse")
    folder = os.path.join(sys.argv[1], name)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(model.to_json())
    model.save_weights(os.path.join(folder, "weights.h5"))
    model.save(os.path.join(folder, "model.h5"), save_format="h5")
    x = xs if len(xs) > 1 else xs[0]
    preds = model(x, training=False)  # `predict` costs ten times more in fixed overhead
    preds = [np.asarray(p) for p in (preds if isinstance(preds, (list, tuple)) else [preds])]
    arrays = {**{f"x{i}": v for i, v in enumerate(xs)}, **{f"p{i}": np.asarray(p) for i, p in enumerate(preds)}}
    train = train and bool(model.trainable_weights)
    if train:
        ys = [f32(*p.shape) for p in preds]
        arrays["loss"] = np.float64(model.train_on_batch(x, ys if len(ys) > 1 else ys[0]))
        arrays.update({f"y{i}": v for i, v in enumerate(ys)})
        arrays.update({f"w{i}": w for i, w in enumerate(legacy_order(model))})
    np.savez(os.path.join(folder, "data.npz"), **arrays)
    manifest[name] = train
with open(os.path.join(sys.argv[1], "cases.json"), "w") as f:
    json.dump(manifest, f)
'''


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory):
    """The folder of every case tf.keras wrote (see TF_WRITER), and the case -> trains manifest."""
    root = tmp_path_factory.mktemp("tfkeras_sweep")
    run_tf_keras(TF_WRITER, root)
    return root, json.loads((root / "cases.json").read_text())


def _arrays(folder, prefix):
    with np.load(folder / "data.npz", allow_pickle=False) as data:
        keys = sorted((key for key in data.files if key[0] == prefix and key[1:].isdigit()), key=lambda key: int(key[1:]))
        return [data[key] for key in keys]


def _single(values):
    return values if len(values) > 1 else values[0]


def _compare_predictions(model, folder):
    """'' when `model` predicts what tf.keras predicted, else what differs."""
    got = model.predict(_single(_arrays(folder, "x")), verbose=0)
    got = got if isinstance(got, (list, tuple)) else [got]
    expected = _arrays(folder, "p")
    if len(got) != len(expected):
        return f"{len(got)} outputs, tf.keras {len(expected)}"
    for index, (ours, theirs) in enumerate(zip(got, expected)):
        ours = np.asarray(ours)
        if ours.shape != theirs.shape:
            return f"output {index} has shape {ours.shape}, tf.keras {theirs.shape}"
        if not np.allclose(ours.astype("float64"), theirs.astype("float64"), atol=ATOL, rtol=ATOL):
            return f"output {index} differs by up to {np.max(np.abs(ours.astype('float64') - theirs)):.3g}"
    return ""


def _sweep(tf_files, check, only_training=False):
    """Run `check(folder)` on every case outside KNOWN_GAPS; a list of 'case: problem' lines."""
    root, manifest = tf_files
    problems = []
    for case, trains in manifest.items():
        if case in KNOWN_GAPS or (only_training and not trains):
            continue
        try:
            problem = check(root / case)
        except Exception as error:  # noqa: BLE001 - every failure is collected, then reported at once
            problem = f"{type(error).__name__}: {str(error)[:300]}"
        if problem:
            problems.append(f"{case}: {problem}")
    return problems


def test_every_layer_covered(tf_files):
    _, manifest = tf_files
    assert len(manifest) >= 100
    assert set(KNOWN_GAPS) <= set(manifest)


def test_load_model_of_every_layer_h5_predicts_like_tfkeras(tf_files):
    def check(folder):
        return _compare_predictions(keramic.models.load_model(folder / "model.h5", safe_mode=False), folder)

    problems = _sweep(tf_files, check)
    assert not problems, "\n".join(problems)


def test_model_from_json_and_weights_of_every_layer_predict_like_tfkeras(tf_files):
    def check(folder):
        model = keramic.models.model_from_json((folder / "config.json").read_text(), safe_mode=False)
        model.load_weights(folder / "weights.h5")
        return _compare_predictions(model, folder)

    problems = _sweep(tf_files, check)
    assert not problems, "\n".join(problems)


def test_every_layer_h5_resumes_training_like_tfkeras(tf_files):
    def check(folder):
        model = keramic.models.load_model(folder / "model.h5", safe_mode=False)
        loss = float(np.ravel(model.train_on_batch(_single(_arrays(folder, "x")), _single(_arrays(folder, "y"))))[0])
        with np.load(folder / "data.npz", allow_pickle=False) as data:
            expected = float(data["loss"])
        if not np.isclose(loss, expected, rtol=1e-5, atol=ATOL):
            return f"loss {loss}, tf.keras {expected}"
        weights = [w for layer in model.layers for w in layer.trainable_weights + layer.non_trainable_weights]
        after = _arrays(folder, "w")
        if len(weights) != len(after):
            return f"{len(weights)} weights, tf.keras {len(after)}"
        for variable, theirs in zip(weights, after):
            ours = np.asarray(variable.numpy())
            if ours.shape != theirs.shape or not np.allclose(ours, theirs, atol=1e-4, rtol=1e-4):
                return f"weight {variable.path} after one step differs from tf.keras's"
        return ""

    problems = _sweep(tf_files, check, only_training=True)
    assert not problems, "\n".join(problems)
