"""Export a model for serving: ONNX graphs plus a directory that reloads as the full model.

Needs the optional extra `pip install keramic[export]` (onnx, onnxruntime) at export and run time;
importing keramic itself never does.

>>> from keramic.export import export_model, load_artifact, predict_artifact
>>> export_model(model, "exported/1")
>>> predict_artifact(x, "exported/1")
"""

from keramic.export.artifact import (
    export_model,
    export_serving,
    is_artifact,
    load_artifact,
    predict_artifact,
    verify_fingerprint,
)
from keramic.export.onnx import ExportError

__all__ = [
    "ExportError",
    "export_model",
    "export_serving",
    "is_artifact",
    "load_artifact",
    "predict_artifact",
    "verify_fingerprint",
]
