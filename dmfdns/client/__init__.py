"""The user side: identities, send and receive, resolver pool, fan-out writer (layer 2)."""
