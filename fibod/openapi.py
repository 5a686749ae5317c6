"""The OpenAPI description served at /openapi.yaml (docs/API.md in prose).

The document is fibod/openapi.yaml, shipped with the package;
docs/openapi.yaml is a link to it, so there is one copy.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def openapi_yaml() -> str:
    """Return the OpenAPI document as text."""
    return files("fibod").joinpath("openapi.yaml").read_text(encoding="utf-8")
