"""Model classes and server-test helpers shared by several test modules."""

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
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


class ServingThread:
    """A ServingApp under uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app):
        from keramic.serving import make_server  # needs the serving extras; only tests that run a server import it

        self.app = app
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = make_server(app, self.port)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.socket])), daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started, what="the server to start")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()
        assert not self.thread.is_alive()

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, dict(response.getheaders()), data
        finally:
            connection.close()

    def json(self, method, path, body=None):
        status, headers, data = self.request(method, path, body)
        if path.startswith("/v1/"):
            assert headers.get("content-type") == "application/json"
        return status, json.loads(data)


def tf_keras_env():
    """The environment a tf.keras 2 subprocess runs in: legacy Keras, CPU only, quiet, no torch backend."""
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    env.update(TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    return env


def run_tf_keras(script, *args, timeout=600):
    """Run `script` (Python source) under tf.keras 2 in a subprocess with `args`; fail with its stderr."""
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=tf_keras_env(), timeout=timeout)
    assert result.returncode == 0, f"the tf.keras subprocess failed:\n{result.stderr[-4000:]}"
    return result
