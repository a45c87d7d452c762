"""HTML pages (Jinja2 templates). Filled in by the pages work; routes added here."""

from fastapi import APIRouter

router = APIRouter(tags=["pages"])
