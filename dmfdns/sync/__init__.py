"""Cluster workers: anti-entropy, manifest gossip, bootstrap, heartbeat (layer 2)."""
