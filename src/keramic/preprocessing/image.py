"""`keras.preprocessing.image`: image files <-> arrays, and aspect-preserving resize."""

from keramic.utils.image_utils import array_to_img, img_to_array, load_img, save_img, smart_resize  # noqa: F401
