"""Models (`keramic.models`): Model, Sequential, and loading/cloning helpers."""

from keramic.models.functional import Functional
from keramic.models.model import Model
from keramic.models.sequential import Sequential
