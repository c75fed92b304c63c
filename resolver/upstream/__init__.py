"""Peering with upstream top-level nodes (issue 7).

``client`` (the Handle client), ``sites`` (server selection by hash), ``cache`` (answers and
site info by TTL, negative, serve-stale), ``singleflight``, ``health`` (failover between
top-level nodes), ``recursor`` (resolving a foreign identifier through the hierarchy), and the
node's upstream agent process with the workers' link to it (``agent``, ``link``).
"""
