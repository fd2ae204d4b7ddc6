"""The Unsloth trainer service: FastLanguageModel loading and patching on top of the TRL service's jobs, data and export."""
