"""ModelForge's Python surface served by Forgeway: hardware detection (detect.py) and its routes."""

from .detect import detect, router

__all__ = ["detect", "router"]
