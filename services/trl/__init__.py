"""The TRL trainer service: SFT, preference and RL methods, seq2seq and QA tasks, as durable jobs over gRPC."""
