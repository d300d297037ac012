"""Service layer: the Backend contract (storage.backend) and the standalone FileStore."""
