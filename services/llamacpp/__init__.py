"""The llama.cpp inference service: GGUF models behind BackendService, and GGUF export of trained models."""
