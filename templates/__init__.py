"""The pages' Jinja2 templates, package data of attnlab (read with importlib.resources; no Python here)."""
