"""Fuzzing beyond the per-parser Hypothesis suites: `raw` sends byte-mutated S3 requests at
a real server; `budget` bounds the Hypothesis suites when `make fuzz` runs them long."""
