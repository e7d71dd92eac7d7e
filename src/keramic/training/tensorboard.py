"""`keras.callbacks.TensorBoard` on PyTorch: real TensorBoard event files through the `tensorboard`
package's writer (as `torch.utils.tensorboard` ships it), with Keras's run folders and tag names.

>>> model.fit(x, y, epochs=3, callbacks=[TensorBoard(log_dir="logs", histogram_freq=1)])

`logs/train` receives `epoch_<metric>` (and `epoch_learning_rate`), `batch_<metric>` when
`update_freq` is "batch" or a number, weight histograms `<weight path>/histogram`, and the model's
config as the "keras" conceptual graph; `logs/validation` receives `epoch_<metric>` of the
validation data and `evaluation_<metric>_vs_iterations`.
"""

import os
import time
import warnings

import numpy as np
import torch

from keramic.serialization.registry import keras_export
from keramic.training.callbacks import Callback

_MISSING_PACKAGE = (
    "keramic.callbacks.TensorBoard writes event files with the `tensorboard` package, which is not "
    "installed. Install it with `pip install tensorboard` (or `pip install keramic[tensorboard]`)."
)


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # torch raises this when the `tensorboard` package is missing
        raise ImportError(_MISSING_PACKAGE) from error
    return SummaryWriter


@keras_export("keras.callbacks")
class TensorBoard(Callback):
    """Log metrics, weight histograms and images, and the model graph for TensorBoard."""

    _chief_only = True  # under keras.distribution only rank 0 writes the event files

    def __init__(
        self,
        log_dir="logs",
        histogram_freq=0,
        write_graph=True,
        write_images=False,
        write_steps_per_second=False,
        update_freq="epoch",
        profile_batch=0,
        embeddings_freq=0,
        embeddings_metadata=None,
    ):
        super().__init__()
        self._writer_class = _summary_writer_class()
        if not (update_freq in ("epoch", "batch") or (isinstance(update_freq, int) and update_freq > 0)):
            raise ValueError(f"update_freq must be 'epoch', 'batch' or a positive integer; got {update_freq!r}.")
        if profile_batch:
            raise ValueError(
                f"keramic's TensorBoard does not profile (got profile_batch={profile_batch!r}); "
                "use torch.profiler with torch.profiler.tensorboard_trace_handler instead."
            )
        if embeddings_freq:
            raise ValueError(
                f"keramic's TensorBoard does not write projector embeddings (got embeddings_freq={embeddings_freq})."
            )
        self.log_dir = str(log_dir)
        self.histogram_freq = histogram_freq
        self.write_graph = write_graph
        self.write_images = write_images
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.embeddings_freq = embeddings_freq
        self.embeddings_metadata = embeddings_metadata
        self._writers = {}
        self._global_train_batch = 0
        self._previous_epoch_iterations = 0
        self._epoch_start_time = 0.0
        self._batch_start_time = 0.0

    # ------------------------------------------------------------------ writers
    def _writer(self, run):
        """The writer of run "train" or "validation", created (with its folder) on first use."""
        if run not in self._writers:
            self._writers[run] = self._writer_class(log_dir=os.path.join(self.log_dir, run))
        return self._writers[run]

    def _close_writers(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ------------------------------------------------------------------ hooks
    def set_model(self, model):
        super().set_model(model)
        self._close_writers()
        if self.write_graph:
            self._write_model_graph()

    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        self._previous_epoch_iterations = 0

    def on_train_end(self, logs=None):
        self._close_writers()

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        if self.write_steps_per_second:
            self._batch_start_time = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        writer = self._writer("train")
        step = self._global_train_batch
        if self.write_steps_per_second:
            writer.add_scalar("batch_steps_per_second", 1.0 / (time.time() - self._batch_start_time), step)
        for name, value in (logs or {}).items():
            writer.add_scalar(f"batch_{name}", _scalar(value), step)

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "iterations") or not logs:
            return
        writer = self._writer("validation")
        step = int(_scalar(optimizer.iterations))
        for name, value in logs.items():
            writer.add_scalar(f"evaluation_{name}_vs_iterations", _scalar(value), step)
        writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        if self.write_steps_per_second:
            self._previous_epoch_iterations = _scalar(self.model.optimizer.iterations)
            self._epoch_start_time = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self._log_epoch_metrics(epoch, logs)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._log_weights(epoch)
        for writer in self._writers.values():
            writer.flush()

    # ------------------------------------------------------------------ content
    def _log_epoch_metrics(self, epoch, logs):
        if not logs:
            return
        train_logs = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val_logs = {k[len("val_") :]: v for k, v in logs.items() if k.startswith("val_")}
        train_logs.update(self._learning_rates())
        if self.write_steps_per_second:
            seconds = time.time() - self._epoch_start_time
            steps = _scalar(self.model.optimizer.iterations) - self._previous_epoch_iterations
            train_logs["steps_per_second"] = steps / seconds
        for run, run_logs in (("train", train_logs), ("validation", val_logs)):
            if run_logs:
                writer = self._writer(run)
                for name, value in run_logs.items():
                    writer.add_scalar(f"epoch_{name}", _scalar(value), epoch)

    def _learning_rates(self):
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if optimizer is None:
            return {}
        if hasattr(optimizer, "optimizers"):
            return {f"learning_rate_{opt.name}": _scalar(opt.learning_rate) for opt in optimizer.optimizers}
        if hasattr(optimizer, "learning_rate"):
            return {"learning_rate": _scalar(optimizer.learning_rate)}
        return {}

    def _log_weights(self, epoch):
        writer = self._writer("train")
        for layer in self.model.layers:
            for weight in layer.weights:
                name = weight.path.replace(":", "_")
                values = _numpy(weight)
                writer.add_histogram(f"{name}/histogram", values, epoch)
                if self.write_images:
                    image = _weight_image(values)
                    if image is not None:
                        writer.add_images(f"{name}/image", image, epoch, dataformats="NHWC")
        writer.flush()

    def _write_model_graph(self):
        """The model config as the "keras" conceptual graph (what Keras writes, for Functional and
        Sequential models); TensorBoard's graph plugin draws it."""
        if type(self.model).__name__ not in ("Functional", "Sequential"):
            return
        try:
            config = self.model.to_json()
        except Exception as error:  # a model that cannot serialise still trains; say why there is no graph
            warnings.warn(f"TensorBoard: the model could not be serialised to JSON, so no graph is written: {error}")
            return
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto

        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="graph_keras_model", content=b"1"))
        tensor = TensorProto(dtype=7, string_val=[config.encode("utf-8")])  # 7: DT_STRING
        summary = Summary(value=[Summary.Value(tag="keras", metadata=metadata, tensor=tensor)])
        writer = self._writer("train")
        writer._get_file_writer().add_summary(summary, 0)
        writer.flush()


def _numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _scalar(value):
    return float(np.asarray(_numpy(value)).reshape(()))


def _weight_image(values):
    """A weight as a batch of greyscale images (NHWC), as Keras lays them out; None if it has no
    image form (more than 3 dimensions after squeezing)."""
    image = np.squeeze(values)
    if image.ndim == 1:
        return image.reshape(1, image.shape[0], 1, 1)
    if image.ndim == 2:
        if image.shape[0] > image.shape[1]:
            image = image.T
        return image.reshape(1, image.shape[0], image.shape[1], 1)
    if image.ndim == 3:
        image = np.transpose(image, (2, 0, 1))
        return image.reshape(image.shape[0], image.shape[1], image.shape[2], 1)
    return None

