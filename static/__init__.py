"""The pages' JavaScript and CSS, package data of attnlab (read with importlib.resources; no Python here)."""
