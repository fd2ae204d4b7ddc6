"""The Hugging Face transformers inference service: batched generation, adapters, summarization and QA."""
