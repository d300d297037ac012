"""Erasure-coded storage across drives (cluster mode's storage half)."""
