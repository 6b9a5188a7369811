"""Record storage: the RecordStore protocol, MemoryStore and LmdbStore (layer 1)."""
