"""Pure v=dmp1 protocol layer: records, keys, sealing and the chunk codec (layer 0)."""
