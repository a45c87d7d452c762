"""The security headers and the Content-Security-Policy: built here once, for every response.

One policy with three variants: the strict one (API answers, static files), the pages' (plus
``style-src-attr`` hashes of the fixed style values Plotly.js sets, see app.web.pages) and
the docs page's (Swagger UI sets many inline styles, so ``style-src`` allows them there).
"""

from __future__ import annotations

# in the order they are sent; "style-src-attr" goes after "style-src" when a page allows hashed values
_DIRECTIVES = (
    ("default-src", "'self'"),
    ("script-src", "'self'"),
    ("style-src", "'self'"),
    ("img-src", "'self' data: blob:"),
    ("connect-src", "'self'"),
    ("object-src", "'none'"),
    ("base-uri", "'none'"),
    ("frame-ancestors", "'none'"),
    ("form-action", "'self'"),
)


def content_security_policy(*, inline_styles: bool = False, style_attr_hashes: tuple[str, ...] = ()) -> str:
    """The policy: same-origin only, no inline script ever. ``inline_styles`` allows inline styles (Swagger UI);
    ``style_attr_hashes`` (``sha256-...``) allow exactly those style attribute values."""
    parts = []
    for name, value in _DIRECTIVES:
        if name == "style-src" and inline_styles:
            value += " 'unsafe-inline'"
        parts.append(f"{name} {value}")
        if name == "style-src" and style_attr_hashes:
            parts.append("style-src-attr 'unsafe-hashes' " + " ".join(f"'{h}'" for h in style_attr_hashes))
    return "; ".join(parts)


STRICT_CSP = content_security_policy()
DOCS_CSP = content_security_policy(inline_styles=True)
DOCS_PATHS = ("/docs",)

# sent with every response unless the response set its own (a page sends its CSP)
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
