"""The APIs of AlignTune, LlamaForge and ModelForge for people moving over, each a thin layer over forgeway.client."""
