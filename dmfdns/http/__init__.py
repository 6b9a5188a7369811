"""The twisted.web resource tree of a node (layer 2, the server side only)."""
