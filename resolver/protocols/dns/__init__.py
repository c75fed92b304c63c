"""The DNS face of the node, sans-IO: the identifier ↔ DNS name mapping (``mapping``), the
record data of answers built from handle values (``answers``: TXT, URI, NAPTR), and the
general-path responder, query bytes → response bytes (``responder``).

Like every package under ``resolver.protocols`` it opens no socket and reads no store or
configuration; callers pass the apex and the case mode in.
"""
