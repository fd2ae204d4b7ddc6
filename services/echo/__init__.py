"""The echo backend: the contract without a model, for gateway tests and overhead benchmarks."""
