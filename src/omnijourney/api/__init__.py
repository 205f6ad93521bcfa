"""HTTP assembly: the FastAPI app, auth dependencies, error handlers."""
