"""Peering with upstream top-level nodes: Handle client, site selection, forwarder, prefix sync.

Empty until the peering issue; the package exists so the layout and its import rules are fixed.
"""
