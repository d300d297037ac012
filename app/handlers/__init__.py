"""One handler per S3 operation, grouped by family. Importing this package loads none
of them: app/handlers/registry.py imports a family's module when one of its operations
is first asked for (`HANDLERS.load_all()` loads every one)."""
