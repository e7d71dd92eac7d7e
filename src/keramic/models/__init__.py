"""Models (`keramic.models`): Model, Sequential, loading and cloning."""

from keramic.models.cloning import clone_model
from keramic.models.functional import Functional
from keramic.models.model import Model
from keramic.models.sequential import Sequential
from keramic.saving.api import load_model, model_from_json, save_model
