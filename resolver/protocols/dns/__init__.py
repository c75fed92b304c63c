"""The DNS face of the node, sans-IO: the identifier ↔ DNS name mapping (``mapping``).

Like every package under ``resolver.protocols`` it opens no socket and reads no store or
configuration; callers pass the apex and the case mode in.
"""
