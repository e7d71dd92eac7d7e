"""Model classes and server-test helpers shared by several test modules."""

import socket
import time

import numpy as np
import torch

import keramic
from keramic import layers


class TinyResidualNet(keramic.Model):
    """keramic's version of the `subclassed` fixture's class (same config and attributes)."""

    def __init__(self, hidden_units=8, num_classes=3, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = hidden_units
        self.num_classes = num_classes
        self.hidden = layers.Dense(hidden_units, name="hidden")
        self.norm = layers.BatchNormalization(name="norm")
        self.skip = layers.Dense(hidden_units, use_bias=False, name="skip")
        self.head = layers.Dense(num_classes, name="head")

    def call(self, inputs, training=False):
        h = torch.relu(self.norm(self.hidden(inputs), training=training))
        return self.head(h + self.skip(inputs))

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "num_classes": self.num_classes}


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (for a test server to take)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout=20.0, what="condition"):
    """Poll `condition()` until its value is true (an array: not None); return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value is not None if isinstance(value, np.ndarray) else bool(value):
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
