"""Test set-up: real Keras (the reference peer) always runs on its torch backend, on the CPU."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


@pytest.fixture
def keras():
    """Real Keras 3 (torch backend), imported lazily so non-interop tests stay fast."""
    keras = pytest.importorskip("keras", reason="real Keras 3 is the interop reference; pip install keras")
    keras.utils.clear_session()
    return keras
