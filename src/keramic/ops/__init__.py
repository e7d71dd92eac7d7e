"""`keras.ops` on torch tensors and on symbolic `KerasTensor`s.

On tensors every function runs eagerly with Keras's signature and dtype rules; on the Functional
API's symbolic tensors it records the same graph node Keras 3 records, so such models save and
load both ways.

>>> keramic.ops.mean(keramic.ops.ones((2, 3)), axis=1)
"""

from keramic.ops import image, linalg, nn, numpy, operators  # noqa: F401  (keras.ops.image, ...; operators on KerasTensor)
from keramic.ops.core import *  # noqa: F401,F403
from keramic.ops.core import map, slice  # noqa: F401,A004
from keramic.ops.dtypes import result_type  # noqa: F401
from keramic.ops.einops import rearrange  # noqa: F401
from keramic.ops.linalg import *  # noqa: F401,F403
from keramic.ops.math import *  # noqa: F401,F403
from keramic.ops.nn import *  # noqa: F401,F403
from keramic.ops.numpy import *  # noqa: F401,F403
from keramic.ops.numpy import abs, all, any, max, min, round, sum  # noqa: F401,A004
