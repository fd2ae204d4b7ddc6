"""Python SDK for Forgeway."""
