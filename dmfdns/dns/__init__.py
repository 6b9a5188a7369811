"""DNS: the pure responder (layer 0) and the Twisted transports in server.py (layer 2)."""
