"""`keras.distillation`: train a small student model to follow a frozen teacher."""

from keramic.distillation.distiller import Distiller
from keramic.distillation.losses import DistillationLoss, FeatureDistillation, LogitsDistillation

__all__ = ["DistillationLoss", "Distiller", "FeatureDistillation", "LogitsDistillation"]
