"""dmfdns: authoritative DNS server and HTTP sync node for the DNS Mesh Protocol (v=dmp1)."""

__version__ = "0.1.0"
