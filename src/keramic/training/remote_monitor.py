"""`keras.callbacks.RemoteMonitor`: POST each epoch's logs to an HTTP server, as Keras does
(form field `field` holding JSON, or a JSON body), with the standard library only.

>>> model.fit(x, y, callbacks=[RemoteMonitor(root="http://localhost:9000")])
"""

import json
import urllib.error
import urllib.parse
import urllib.request
import warnings

import numpy as np
import torch

from keramic.serialization.registry import keras_export
from keramic.training.callbacks import Callback

_TIMEOUT_S = 10


@keras_export("keras.callbacks")
class RemoteMonitor(Callback):
    """At each epoch end, send `{"epoch": epoch, **logs}` to `root + path`; an unreachable server
    gives a warning, never a failed training run."""

    _chief_only = True  # under keras.distribution only rank 0 posts the logs

    def __init__(self, root="http://localhost:9000", path="/publish/epoch/end/", field="data", headers=None, send_as_json=False):
        super().__init__()
        self.root = root
        self.path = path
        self.field = field
        self.headers = headers
        self.send_as_json = send_as_json

    def on_epoch_end(self, epoch, logs=None):
        payload = {"epoch": epoch, **{key: _plain(value) for key, value in (logs or {}).items()}}
        headers = dict(self.headers or {})
        if self.send_as_json:
            body = json.dumps(payload).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        else:
            body = urllib.parse.urlencode({self.field: json.dumps(payload)}).encode("ascii")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        request = urllib.request.Request(self.root + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            warnings.warn(f"Could not reach RemoteMonitor root server at {self.root} ({error}).", stacklevel=2)


def _plain(value):
    """numpy and torch scalars as Python numbers, so that `json` can write them."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item()
    return value
