"""`keramic.callbacks`: the Keras 3 callbacks for `fit`, `evaluate` and `predict`."""

from keramic.training.callbacks import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ProgbarLogger,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from keramic.training.checkpoint_callbacks import BackupAndRestore, ModelCheckpoint
from keramic.training.remote_monitor import RemoteMonitor
from keramic.training.swap_ema_weights import SwapEMAWeights
from keramic.training.tensorboard import TensorBoard

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "RemoteMonitor",
    "SwapEMAWeights",
    "TensorBoard",
    "TerminateOnNaN",
]
