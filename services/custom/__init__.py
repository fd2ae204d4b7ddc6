"""`forgeway serve custom`: a LlamaForge-style backend class (module:Class) served over the contract."""
