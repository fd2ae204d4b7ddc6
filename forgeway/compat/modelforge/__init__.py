"""ModelForge's Python surface served by Forgeway: hardware detection (detect.py) and its routes, providers
(providers.py), the list of fine-tuned models (models.py), the playground (playground.py)."""

from .detect import detect, router
from .models import list_models
from .playground import PlaygroundModel
from .providers import BaseProvider, HuggingFaceProvider, ProviderRegistry, SettingsError, UnslothProvider

__all__ = ["BaseProvider", "HuggingFaceProvider", "PlaygroundModel", "ProviderRegistry", "SettingsError",
           "UnslothProvider", "detect", "list_models", "router"]
