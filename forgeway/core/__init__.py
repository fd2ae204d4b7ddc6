"""The domain core: errors and their one table, generation types, enum tables, model store, capabilities. No transport."""
