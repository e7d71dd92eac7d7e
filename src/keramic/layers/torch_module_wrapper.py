"""TorchModuleWrapper: a plain `torch.nn.Module` used as a layer, its parameters tracked as Keras variables.

Weights are saved as Keras saves them: the module's `state_dict()` entries (buffers included) under
their torch names in the layer's group. Keras puts the whole module in the config as a pickle;
keramic never pickles nor unpickles, so a config carries no module and a model holding this layer
is rebuilt in code, then given its weights with `load_weights`.
"""

import torch

from keramic import backend
from keramic.errors import UnsafeDeserializationError
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export


@keras_export("keras.layers")
class TorchModuleWrapper(Layer):
    """Runs `module` as a layer; its parameters become the layer's (trainable unless frozen) weights."""

    def __init__(self, module, name=None, output_shape=None, **kwargs):
        if not isinstance(module, torch.nn.Module):
            raise UnsafeDeserializationError(
                "TorchModuleWrapper needs a torch.nn.Module built in code; got "
                f"{type(module).__name__}. keramic does not unpickle modules stored in configs: build the "
                "module yourself and load the weights."
            )
        if isinstance(module, torch.nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            raise ValueError(
                f"LazyModules are not supported unless they are already initialized. Received uninitialized LazyModule: module={module}"
            )
        super().__init__(name=name, **kwargs)
        self.module = module.to(backend.get_device())
        self.output_shape = output_shape
        self._track_module_parameters()

    def _track_module_parameters(self):
        """Swap each module parameter for a Keras variable on the same storage (no copy)."""
        for owner in self.module.modules():
            for key, parameter in list(owner._parameters.items()):
                if parameter is None or isinstance(parameter, backend.Variable):
                    continue
                variable = backend.Variable.from_fresh_tensor(
                    parameter.data, name=key, trainable=parameter.requires_grad, path=f"{self.name}/{key}"
                )
                variable.requires_grad_(parameter.requires_grad)
                variable._keramic_registered = True  # the module keeps it in its own _parameters
                owner._parameters[key] = variable
                (self._own_trainable if parameter.requires_grad else self._own_non_trainable).append(variable)
        self.built = True

    def call(self, *args, training=None, **kwargs):
        self.module.train(training is not False)
        return self.module(*args, **kwargs)

    def save_own_variables(self, store):
        for key, value in self.module.state_dict().items():
            store[key] = value.detach().cpu().numpy()

    def load_own_variables(self, store):
        state = {}
        for key in store.keys():
            name = key.decode() if isinstance(key, bytes) else key
            state[name] = torch.as_tensor(store[key][...] if hasattr(store[key], "shape") else store[key])
        self.module.load_state_dict(state)

    def compute_output_shape(self, input_shape):
        if self.output_shape is None:
            return super().compute_output_shape(input_shape)
        return self.output_shape

    def get_config(self):
        return {**super().get_config(), "module": None, "output_shape": self.output_shape}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        module = config.get("module")
        if not isinstance(module, torch.nn.Module):
            raise UnsafeDeserializationError(
                f"TorchModuleWrapper '{config.get('name')}': the config holds no usable torch module "
                f"(found {type(module).__name__}; Keras stores a pickle, which keramic never loads). Rebuild the "
                "model in code with the same torch module and call `load_weights` on it."
            )
        return cls(**config)
