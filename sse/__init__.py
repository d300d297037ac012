"""Encryption at rest: the sealed package format, data-key wrapping, the local keyring.

Knows nothing of HTTP or storage: the ASGI layer seals bodies before any backend sees
them, so no file, drive or peer ever holds plaintext.
"""
