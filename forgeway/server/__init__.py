"""What runs any Forgeway gRPC service: serve, interceptor, health, metrics, logs, settings, the backend registry."""
