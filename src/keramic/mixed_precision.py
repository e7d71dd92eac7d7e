"""`keras.mixed_precision`: dtype policies and loss scaling.

>>> keramic.mixed_precision.set_global_policy("mixed_float16")  # float16 compute, float32 variables
"""

from keramic.dtype_policies import DTypePolicy, dtype_policy, set_dtype_policy
from keramic.optimizers.loss_scale_optimizer import LossScaleOptimizer

Policy = DTypePolicy
global_policy = dtype_policy
set_global_policy = set_dtype_policy

__all__ = ["DTypePolicy", "LossScaleOptimizer", "Policy", "dtype_policy", "global_policy", "set_dtype_policy", "set_global_policy"]
