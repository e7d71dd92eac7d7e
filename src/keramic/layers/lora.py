"""LoRA (low-rank adaptation) of Dense, EinsumDense and Embedding, with Keras 3's behaviour.

`enable_lora(rank)` freezes the layer's base weight (`kernel`, or `embeddings`) and adds two
trainable factors `<base>_a` (the base shape with its last axis replaced by `rank`) and
`<base>_b` (`(rank, last axis)`), named `lora_kernel_a` / `lora_kernel_b` (Embedding:
`lora_embeddings_a` / `lora_embeddings_b`). The layer's `kernel` then reads
`base + (a @ b) * (lora_alpha / lora_rank)`. Files hold the merged weight only, as Keras's do, and
loading one into a LoRA layer puts it in the base weight and zeroes both factors.

The layer classes expose `<base>` through a property (see `LoraWeight`) that reads the variable from
the instance's `__dict__`, so code that reads `layer.kernel` sees what Keras's layer returns.
"""

import sys

import torch

from keramic import backend
from keramic.serialization import saveable

_REFUSED_QUANTIZED = ("gptq", "awq")  # not checked against Keras: keramic refuses them


class LoraWeight:
    """The property that stands for a LoRA-capable layer's base weight (`kernel`, `embeddings`)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        base = layer.__dict__.get(self.name)  # where mixed precision swaps in its cast copy
        if base is None or not layer.__dict__.get("lora_enabled") or layer.quantization_mode is not None:
            return base
        return base + delta(layer)

    def __set__(self, layer, value):
        layer.__dict__[self.name] = value


def init(layer, lora_rank, lora_alpha) -> None:
    """The constructor's part: record the arguments (`build` enables LoRA when `lora_rank` is set)."""
    layer.lora_rank = lora_rank
    layer.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
    layer.lora_enabled = False


def enable(layer, rank: int, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros") -> None:
    """`layer.enable_lora(...)`: freeze the base weight and add the two trainable low-rank factors."""
    base_name = layer._lora_base_name
    constraint = getattr(layer, f"{base_name}_constraint", None)
    if constraint is not None:
        described = "kernel" if base_name == "kernel" else "embedding"
        raise ValueError(
            f"Lora is incompatible with {described} constraints. In order to enable lora on this layer, remove the `{base_name}_constraint` argument."
        )
    if not layer.built:
        raise ValueError("Cannot enable lora on a layer that isn't yet built.")
    if layer.lora_enabled:
        raise ValueError("lora is already enabled. This can only be done once per layer.")
    if layer.quantization_mode in _REFUSED_QUANTIZED:
        raise NotImplementedError(f"LoRA on a '{layer.quantization_mode}'-quantized layer is not implemented in keramic yet.")
    shape = tuple(layer._lora_base_shape)
    a = layer.add_weight(name=f"lora_{base_name}_a", shape=shape[:-1] + (rank,), initializer=a_initializer)
    b = layer.add_weight(name=f"lora_{base_name}_b", shape=(rank, shape[-1]), initializer=b_initializer)
    setattr(layer, f"lora_{base_name}_a", a)
    setattr(layer, f"lora_{base_name}_b", b)
    layer.__dict__[base_name].trainable = False
    layer.lora_enabled = True
    layer.lora_rank = rank
    layer.lora_alpha = lora_alpha if lora_alpha is not None else rank
    layer.__dict__["_keramic_saves_own_state"] = True  # files hold the merged weight: the hooks below run


def factors(layer) -> tuple:
    """The layer's (a, b) LoRA variables."""
    base_name = layer._lora_base_name
    return getattr(layer, f"lora_{base_name}_a"), getattr(layer, f"lora_{base_name}_b")


def delta(layer) -> torch.Tensor:
    """`(a @ b) * (lora_alpha / lora_rank)`: what LoRA adds to the base weight."""
    a, b = factors(layer)
    return torch.matmul(a, b) * (layer.lora_alpha / layer.lora_rank)


def add_to_outputs(layer, inputs: torch.Tensor, outputs: torch.Tensor, first) -> torch.Tensor:
    """A quantized layer's LoRA term, `first(inputs, a) @ b` scaled, added to `outputs` (`first` is
    the layer's own product: a matmul, its einsum, or an embedding lookup)."""
    a, b = factors(layer)
    return outputs + torch.matmul(first(inputs, a), b) * (layer.lora_alpha / layer.lora_rank)


def config(layer) -> dict:
    """The config entries Keras writes for a LoRA layer (none for a plain one)."""
    return {"lora_rank": layer.lora_rank, "lora_alpha": layer.lora_alpha} if layer.lora_rank else {}


def save_own_variables(layer, store) -> None:
    """Keras's file entries of a LoRA layer: its usual ones, with the LoRA update merged into the base
    weight (an int8/int4 layer's merged kernel requantized, as Keras does)."""
    mode = layer.quantization_mode
    replaced = {}
    if mode in ("int8", "int4"):
        replaced = sys.modules["keramic.layers.quantized"].merged_lora(layer)
    elif mode == "float8":
        raise ValueError(f"Unsupported quantization mode: {mode}")
    elif mode is not None:
        raise NotImplementedError(f"Saving the '{mode}'-quantized layer '{layer.name}' with LoRA enabled is not implemented in keramic yet.")
    for index, variable in enumerate(layer._saveable_variables()):
        store[str(index)] = replaced.get(id(variable), variable)


def load_own_variables(layer, store) -> None:
    """Load a (merged) file entry into the base weight and zero both LoRA factors, as Keras does."""
    base = layer.__dict__[layer._lora_base_name]
    variables = [v if isinstance(v, backend.Variable) else base for v in layer._variables_for_saved(len(store.keys()))]
    if len(store.keys()) != len(variables):
        raise ValueError(f"Layer '{layer.name}' expected {len(variables)} variables, but received {len(store.keys())} variables during loading.")
    for index, variable in enumerate(variables):
        variable.assign(store[str(index)])
    for factor in factors(layer):
        factor.assign(torch.zeros_like(torch.as_tensor(factor)))


class LoraLayer:
    """`enable_lora` and the save/load hooks of the layers that take LoRA (mixed in before `Layer`)."""

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Freeze the base weight and train a rank-`rank` update `<base>_a @ <base>_b` instead."""
        enable(self, rank, lora_alpha, a_initializer, b_initializer)

    @saveable.default_hook  # runs only once LoRA is enabled (see `enable`); otherwise saved in bulk
    def save_own_variables(self, store):
        if self.lora_enabled:
            save_own_variables(self, store)
        else:
            super().save_own_variables(store)  # Layer's, next in the MRO

    @saveable.default_hook
    def load_own_variables(self, store):
        if self.lora_enabled:
            load_own_variables(self, store)
        else:
            super().load_own_variables(store)  # Layer's, next in the MRO
