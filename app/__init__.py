"""attnlab's web layer: FastAPI app, services, CLI. Depends on models/, never the reverse."""
