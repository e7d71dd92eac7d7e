"""Model classes shared by several test modules."""

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
