"""Shared mechanisms, written once: errors, progress, digests, download, extract, URIs,
sinks, stores, manifests, leases, variation tables.
"""
