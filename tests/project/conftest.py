"""The project layer: checks on the repository's own files (ruff, import contracts, the Dockerfile
against the Makefile's pins)."""
