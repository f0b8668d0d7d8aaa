"""Recipe files: the typed schema, loading with overrides, and turning `model` into a model."""

from toolkit.recipes.load import load_recipe
from toolkit.recipes.schema import DataConfig, GenerateConfig, ModelConfig, Recipe

__all__ = ["DataConfig", "GenerateConfig", "ModelConfig", "Recipe", "load_recipe"]
