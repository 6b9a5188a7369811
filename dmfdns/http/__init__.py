"""The twisted.web resource tree of a node, and the bounded pieces of outbound requests
(``outbound``) that the record writer and the sync client share (layer 2)."""
