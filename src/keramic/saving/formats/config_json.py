"""A model config on its own (`model.to_json()`, a `.keras` archive's config.json): architecture, no weights.

It is no saved model (load it with `keramic.models.model_from_json`), but `keramic inspect`
describes it, and `keramic convert --config` pairs it with a weights file.
"""

import os

from keramic.saving import inspect_summary
from keramic.saving.formats import sharded_weights, table
from keramic.saving.stores import atomic


def recognise(path: str) -> bool:
    """A file whose first non-blank byte opens a JSON object or array."""
    return os.path.isfile(path) and table.head(path, 64).lstrip()[:1] in (b"{", b"[")


def load_weights_into(model, path, skip_mismatch=False, by_name=False, verify=True):
    """A JSON file given to `load_weights` can only be a sharded index: read it as one, so that its
    errors say what is wrong with it."""
    table.refuse_by_name(path, by_name)
    return sharded_weights.load(model, path, skip_mismatch)


def inspect(path: str) -> dict:
    config = atomic.read_json_file(path, what="a config JSON file")
    return inspect_summary.summarize(path, "config_json", CONFIG_JSON.description, config=config)


CONFIG_JSON = table.register(
    table.FileFormat(
        name="config_json",
        title="model config JSON",
        description="model config JSON (model.to_json() / config.json): architecture only, no weights",
        recognise=recognise,
        load_weights=load_weights_into,
        inspect=inspect,
        hint="is a JSON file, not a saved model. For an architecture (`model.to_json()`, config.json) use "
        "`keramic.models.model_from_json(text)`; for a sharded weights index (`*.weights.json`) build the model "
        "and call `model.load_weights(...)`.",
        order=41,
    )
)
