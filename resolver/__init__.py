"""idnode data plane: identifiers, records, store, codecs, engine and servers."""

__version__ = "0.1.0"
