"""`keras.preprocessing.sequence`: `pad_sequences`."""

from keramic.utils.sequence_utils import pad_sequences  # noqa: F401
