"""Forgeway services: the shared runtime and one package per backend."""
