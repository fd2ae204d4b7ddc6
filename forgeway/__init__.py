"""Forgeway: one gRPC contract to train and serve language models."""

__version__ = "0.1.0"
