"""Cluster mode: erasure-coded DistributedStore across drives and nodes.

Arrives with the erasure-coding and cluster issues; standalone mode uses storage.FileStore.
"""
