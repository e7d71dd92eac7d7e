"""Small ready-made datasets (`keras.datasets`): `mnist` (downloaded once, cached) and `digits` (shipped)."""

from keramic.datasets import digits, mnist

__all__ = ["digits", "mnist"]
