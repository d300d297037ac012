"""Bucket lifecycle: the typed configuration and its pure rules (rules.py), the
background worker that applies them to a Backend (worker.py), its pacing (pace.py),
its resumable progress (progress.py) and who runs which bucket in a cluster
(ownership.py). Nothing here knows about HTTP or XML: app/lifecyclexml.py turns the
S3 document into these records."""
