"""The one outbound HTTP client (layer 2): ``client`` (requests with one deadline), ``body``
(bounded bodies), ``errors`` (the error set, each with a cause label) and ``tls`` (verified
HTTPS). ``sync`` and ``client`` reach nodes only through it, never through ``http``."""
