"""Sans-IO codecs, one package per protocol: bytes ↔ objects, and one outcome→code table each.

Nothing here imports sockets, the store, the engine or configuration (checked by tests/meta).
"""
