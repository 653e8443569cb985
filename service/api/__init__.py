"""HTTP layer: schemas, routes, error mapping. Nothing below this package knows FastAPI."""
