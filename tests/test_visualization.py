"""Parity of `keramic.visualization` with real Keras 3 (torch backend): the pixels OpenCV draws for
`draw_bounding_boxes`, and the RGBA buffers of the matplotlib galleries rendered with Agg at a fixed DPI."""

import ast
import pathlib
import sys

import numpy as np
import pytest
import torch

import keramic

cv2 = pytest.importorskip("cv2", reason="draw_bounding_boxes draws with OpenCV: pip install opencv-python-headless")
matplotlib = pytest.importorskip("matplotlib", reason="the galleries plot with matplotlib: pip install matplotlib")
matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import patches  # noqa: E402

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def keras():
    """Real Keras 3 (torch backend), imported once: these tests build no models, so no clear_session each time."""
    return pytest.importorskip("keras", reason="real Keras 3 is the reference; pip install keras")


RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (3, 48, 56, 3)).astype("uint8")
BOXES = {
    "boxes": np.array(
        [
            [[4.7, 20.2, 30.9, 40.5], [10, 3, 50, 25], [0, 0, 0, 0]],
            [[1, 1, 20, 30], [30.5, 30.5, 55, 47], [2, 2, 8, 8]],
            [[5, 25, 40, 45], [0, 0, 0, 0], [0, 0, 0, 0]],
        ],
        "float32",
    ),
    "labels": np.array([[0, 1, -1], [2, 0, 1], [1, -1, -1]]),
}
CONFIDENCES = np.array([[0.91, 0.456, 0.0], [0.333, 0.5, 0.125], [0.999, 0.0, 0.0]], "float32")
CLASSES = {0: "cat", 1: "dog"}


def _boxes_in(keras, fmt):
    """BOXES (xyxy) in format `fmt`, converted by real Keras."""
    converted = keras.utils.bounding_boxes.convert_format(BOXES["boxes"], "xyxy", fmt, height=48, width=56)
    return {"boxes": keras.ops.convert_to_numpy(converted), "labels": BOXES["labels"]}


def test_draw_bounding_boxes_same_pixels_as_keras_in_every_format(keras):
    for fmt in ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw", "rel_xyxy", "rel_yxyx", "rel_xywh", "rel_center_xywh"):
        boxes = _boxes_in(keras, fmt)
        expected = keras.visualization.draw_bounding_boxes(IMAGES, boxes, fmt, class_mapping=CLASSES)
        got = keramic.visualization.draw_bounding_boxes(IMAGES, boxes, fmt, class_mapping=CLASSES)
        assert got.dtype == expected.dtype == np.uint8
        np.testing.assert_array_equal(got, expected, err_msg=fmt)
        assert (got != IMAGES).any()


@pytest.mark.parametrize(
    "images, options",
    [
        (IMAGES.astype("float32") / 255.0, dict(color=(255, 0, 0), line_thickness=1, font_scale=0.4)),  # [0, 1] floats
        (IMAGES.astype("float64") * 1.5, dict(text_thickness=0, line_thickness=3)),  # clipped to 255; text as thick as lines
        (IMAGES[..., :1].copy(), dict(color=(200,), font_scale=0.6, text_thickness=2)),  # one channel
        (torch.tensor(IMAGES), dict(font_scale=0.5)),
    ],
)
def test_draw_bounding_boxes_value_ranges_labels_and_confidences(keras, images, options):
    boxes = {**BOXES, "confidences": CONFIDENCES}
    expected = keras.visualization.draw_bounding_boxes(images, boxes, "xyxy", class_mapping=CLASSES, **options)
    got = keramic.visualization.draw_bounding_boxes(images, {k: torch.tensor(v) for k, v in boxes.items()}, "xyxy", class_mapping=CLASSES, **options)
    np.testing.assert_array_equal(got, expected)
    without_labels = keras.visualization.draw_bounding_boxes(images, BOXES, "xyxy", **options)
    np.testing.assert_array_equal(keramic.visualization.draw_bounding_boxes(images, BOXES, "xyxy", **options), without_labels)
    assert (expected != without_labels).any()  # the text was drawn


def test_draw_bounding_boxes_leaves_input_alone_and_takes_channels_first(keras):
    before = IMAGES.copy()
    expected = keras.visualization.draw_bounding_boxes(IMAGES, BOXES, "xyxy", class_mapping=CLASSES)
    got = keramic.visualization.draw_bounding_boxes(IMAGES.transpose(0, 3, 1, 2), BOXES, "xyxy", class_mapping=CLASSES, data_format="channels_first")
    np.testing.assert_array_equal(IMAGES, before)
    # Keras's own channels_first path hands OpenCV a (C, H, W) array and fails; keramic draws on (H, W, C).
    np.testing.assert_array_equal(got, expected.transpose(0, 3, 1, 2))


@pytest.mark.parametrize(
    "args, error",
    [
        ((IMAGES[0], BOXES, "xyxy"), ValueError),
        ((IMAGES, [BOXES["boxes"]], "xyxy"), TypeError),
        ((IMAGES, {"boxes": BOXES["boxes"]}, "xyxy"), ValueError),
        ((IMAGES, BOXES, "xyxyxy"), ValueError),
    ],
)
def test_draw_bounding_boxes_rejects_bad_inputs_as_keras(keras, args, error):
    with pytest.raises(error):
        keras.visualization.draw_bounding_boxes(*args)
    with pytest.raises(error):
        keramic.visualization.draw_bounding_boxes(*args)


def _render(function, *args, **kwargs):
    """The RGBA pixels and structure of the figure `function` leaves open (Agg, 40 DPI)."""
    plt.close("all")
    with matplotlib.rc_context({"figure.dpi": 40}):
        function(*args, show=False, **kwargs)
        figure = plt.gcf()
        figure.canvas.draw()
        pixels = np.asarray(figure.canvas.buffer_rgba()).copy()
    structure = [
        (tuple(axis.get_position().bounds), axis.get_title(), [np.asarray(image.get_array()).tobytes() for image in axis.get_images()]) for axis in figure.axes
    ]
    legends = [[text.get_text() for text in legend.get_texts()] for legend in figure.legends]
    plt.close("all")
    return pixels, structure, legends


def _same_figure(keras_function, keramic_function, *args, keras_args=None, keras_kwargs=None, **kwargs):
    """Both render the same figure; `keras_args` / `keras_kwargs` replace Keras's inputs (channels_last twins)."""
    expected = _render(keras_function, *(args if keras_args is None else keras_args), **{**kwargs, **(keras_kwargs or {})})
    got = _render(keramic_function, *args, **kwargs)
    assert got[1] == expected[1] and got[2] == expected[2]
    np.testing.assert_array_equal(got[0], expected[0])
    return got


def test_plot_image_gallery_same_figure_as_keras(keras):
    four = np.concatenate([IMAGES, IMAGES[:1]]) / 255.0
    _, structure, _ = _same_figure(
        keras.visualization.plot_image_gallery,
        keramic.visualization.plot_image_gallery,
        four,
        y_true=np.array([0, 1, 5, 1]),
        y_pred=torch.tensor([1, 1, 0]),
        label_map=CLASSES,
        value_range=(0, 1),
        scale=1.5,
    )
    assert [title for _, title, _ in structure] == ["Label: cat  Pred: dog", "Label: dog  Pred: dog", "Label: Unknown  Pred: cat", "Label: dog"]
    _, structure, legends = _same_figure(
        keras.visualization.plot_image_gallery,
        keramic.visualization.plot_image_gallery,
        IMAGES,
        rows=1,
        cols=3,
        legend_handles=[patches.Patch(color="red", label="thing")],
    )
    assert len(structure) == 3 and legends == [["thing"]]
    _, structure, _ = _same_figure(keras.visualization.plot_image_gallery, keramic.visualization.plot_image_gallery, IMAGES[:1])
    assert len(structure) == 1
    _, structure, _ = _same_figure(keras.visualization.plot_image_gallery, keramic.visualization.plot_image_gallery, IMAGES)
    assert len(structure) == 2  # rows = ceil(sqrt(3)) = 2, cols = 3 // 2 = 1: Keras shows two of the three


def test_plot_image_gallery_takes_channels_first(keras):
    # Keras transposes channels_first images twice and fails; keramic shows what channels_last shows.
    _same_figure(
        keras.visualization.plot_image_gallery,
        keramic.visualization.plot_image_gallery,
        IMAGES.transpose(0, 3, 1, 2),
        keras_args=(IMAGES,),
        data_format="channels_first",
        keras_kwargs={"data_format": "channels_last"},
        rows=1,
        cols=2,
    )


def test_plot_bounding_box_gallery_same_figure_as_keras(keras):
    pred = {**BOXES, "confidences": CONFIDENCES}
    _, structure, legends = _same_figure(
        keras.visualization.plot_bounding_box_gallery,
        keramic.visualization.plot_bounding_box_gallery,
        IMAGES,
        "xyxy",
        y_true=BOXES,
        y_pred=pred,
        class_mapping=CLASSES,
        legend=True,
        prediction_mapping={1: "pred-dog"},
        font_scale=0.5,
        rows=1,
        cols=3,
        scale=1,
    )
    assert len(structure) == 3 and legends == [["Ground Truth", "Prediction"]]
    _same_figure(
        keras.visualization.plot_bounding_box_gallery,
        keramic.visualization.plot_bounding_box_gallery,
        IMAGES.transpose(0, 3, 1, 2),
        "rel_xyxy",
        y_pred=_boxes_in(keras, "rel_xyxy"),
        data_format="channels_first",
        line_thickness=1,
    )


def test_plot_segmentation_mask_gallery_same_figure_as_keras(keras):
    masks = RNG.integers(-1, 3, (3, 48, 56, 1))
    _, structure, _ = _same_figure(
        keras.visualization.plot_segmentation_mask_gallery,
        keramic.visualization.plot_segmentation_mask_gallery,
        IMAGES,
        3,
        y_true=masks,
        y_pred=torch.tensor(masks[::-1].copy()),
        scale=1,
    )
    assert len(structure) == 9
    colors = {i: [i * 60, 255 - i * 60, 9] for i in range(4)}
    _same_figure(
        keras.visualization.plot_segmentation_mask_gallery,
        keramic.visualization.plot_segmentation_mask_gallery,
        IMAGES[:2].transpose(0, 3, 1, 2),
        4,
        y_pred=masks[:2].transpose(0, 3, 1, 2),
        blend=False,
        data_format="channels_first",
        color_mapping=colors,
    )
    # (B, H, W) masks, which Keras documents but fails on, show as their (B, H, W, 1) twins do in Keras.
    _same_figure(
        keras.visualization.plot_segmentation_mask_gallery,
        keramic.visualization.plot_segmentation_mask_gallery,
        IMAGES[:2] / 255.0,
        3,
        y_true=masks[:2, ..., 0],
        keras_kwargs={"y_true": masks[:2]},
        value_range=(0, 1),
        alpha=0.5,
    )


def test_path_saves_a_png_and_closes_the_figure(keras, tmp_path):
    for module in (keras, keramic):
        path = tmp_path / f"{module.__name__}.png"
        module.visualization.plot_bounding_box_gallery(IMAGES, "xyxy", y_true=BOXES, class_mapping=CLASSES, path=str(path), dpi=30)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert plt.get_fignums() == []
    np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / "keramic.png"), matplotlib.image.imread(tmp_path / "keras.png"))
    for module in (keras, keramic):  # no path: shown (a no-op on Agg) and closed
        module.visualization.plot_image_gallery(IMAGES[:1])
        assert plt.get_fignums() == []


@pytest.mark.parametrize(
    "name, args, kwargs, error",
    [
        ("plot_image_gallery", (IMAGES,), dict(path="x.png", show=True), ValueError),
        ("plot_image_gallery", (IMAGES,), dict(y_true=[0, 1, 0]), ValueError),
        ("plot_image_gallery", (IMAGES[0],), dict(show=False), ValueError),
        ("plot_image_gallery", (IMAGES,), dict(rows=2, cols=2, show=False), IndexError),
        ("plot_bounding_box_gallery", (IMAGES[0], "xyxy"), dict(show=False), ValueError),
        ("plot_bounding_box_gallery", (IMAGES, "xyxy"), dict(legend=True, legend_handles=[patches.Patch(label="x")], show=False), ValueError),
        ("plot_segmentation_mask_gallery", (IMAGES[0], 3), dict(show=False), ValueError),
    ],
)
def test_galleries_reject_bad_inputs_as_keras(keras, name, args, kwargs, error):
    for module in (keras, keramic):
        with pytest.raises(error):
            getattr(module.visualization, name)(*args, **kwargs)
        plt.close("all")


def test_missing_opencv_or_matplotlib_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match="opencv"):
        keramic.visualization.draw_bounding_boxes(IMAGES, BOXES, "xyxy")
    for module in ("matplotlib.pyplot", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, module, None)
    for call in (
        lambda: keramic.visualization.plot_image_gallery(IMAGES, show=False),
        lambda: keramic.visualization.plot_bounding_box_gallery(IMAGES, "xyxy", show=False),
        lambda: keramic.visualization.plot_segmentation_mask_gallery(IMAGES, 3, show=False),
    ):
        with pytest.raises(ImportError, match="matplotlib"):
            call()


def _eager_imports(node):
    """Modules imported by `node` outside function bodies (those imports run only when the function is called)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        yield node.module or ""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _eager_imports(child)


def test_no_keramic_module_imports_matplotlib_or_opencv_at_import_time():
    # `import keramic` must load neither pyplot (it picks a GUI backend) nor OpenCV: only function bodies import them.
    root = pathlib.Path(keramic.__file__).parent
    offenders = []
    for source in root.rglob("*.py"):
        text = source.read_text()
        if "matplotlib" in text or "cv2" in text:
            offenders += [f"{source.relative_to(root)}: {name}" for name in _eager_imports(ast.parse(text)) if name.split(".")[0] in ("matplotlib", "cv2")]
    assert offenders == []
