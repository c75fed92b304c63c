"""The DNS face of the node, sans-IO: the identifier ↔ DNS name mapping (``mapping``) and the
record data of answers built from handle values (``answers``: TXT, URI, NAPTR).

Like every package under ``resolver.protocols`` it opens no socket and reads no store or
configuration; callers pass the apex and the case mode in.
"""
