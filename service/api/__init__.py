"""HTTP layer: schemas, routes, middleware, the error mapping. Nothing outside this package
(and the app factory that assembles it) knows FastAPI or HTTP status codes."""
