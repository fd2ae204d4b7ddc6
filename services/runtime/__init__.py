"""The runtime every Forgeway service shares: serve(), errors, settings, metrics, logs, registry."""
