"""The Jinja2 templates of the HTML pages (a run's ``index.html``, the comparison of runs), shipped with the package."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Returns the environment that loads this folder's ``*.j2`` files, HTML-escaping every value."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(HERE), autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(name: str, **context) -> str:
    """Returns template ``name`` rendered with ``context``."""
    return environment().get_template(name).render(**context)
