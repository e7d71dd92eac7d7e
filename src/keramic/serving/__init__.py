"""A TensorFlow-Serving-compatible REST server for exported artifacts (`keramic serve`).

Needs the optional extra `pip install keramic[serve]` (onnxruntime, uvicorn, httptools, orjson).

>>> from keramic.serving import ServingApp, make_server
>>> make_server(ServingApp("mnist", "/models/mnist"), port=8501).run()
"""

from keramic.serving.server import ServingApp, make_server, serve

__all__ = ["ServingApp", "make_server", "serve"]
