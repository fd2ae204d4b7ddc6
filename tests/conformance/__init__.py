"""The BackendService conformance suite: the same checks against every backend and the gateway."""
