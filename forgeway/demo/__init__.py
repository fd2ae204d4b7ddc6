"""The demo model `forgeway demo-model` builds: its corpus, tokenizer, chat template, Llama shape and training."""
