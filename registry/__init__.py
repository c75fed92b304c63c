"""idnode control plane: enterprises, prefixes, registration and bulk import.

May import ``resolver.{errors, identifier, values, valuejson, record, store, config}``; never
``resolver.servers`` or ``native`` (checked by tests/meta).
"""
