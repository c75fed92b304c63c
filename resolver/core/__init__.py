"""The resolution engine: protocol-free requests and results, the handler chain, handlers."""
