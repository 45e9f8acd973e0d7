"""First-party plugin: a build-status badge per repository, like Jenkins' embeddable build status.

After every finished build, ``<data dir>/badges/<repo>.svg`` shows the repository's latest status
("build | success" in green, ...). Serve the folder or copy it anywhere; nothing else is needed.
It uses only the public hooks (``conveyor_build_finished``), as any third-party plugin would.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runner.hookspecs import hookimpl

__all__ = ["badge_path", "badge_svg"]

_COLOURS = {"success": "#4c1", "failure": "#e05d44", "timed_out": "#e05d44", "config_error": "#e05d44",
            "cancelled": "#9f9f9f", "interrupted": "#dfb317", "skipped": "#9f9f9f"}


def badge_path(data_dir: Path, repo: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", repo) or "_"
    return Path(data_dir) / "badges" / f"{safe}.svg"


def badge_svg(label: str, status: str) -> str:
    from html import escape  # here: html's import (its entity table) is not for every build's start

    # Roughly 7 px a character in Verdana 11: good enough for a badge, and no font metrics needed.
    left, right = 7 * len(label) + 10, 7 * len(status) + 10
    colour = _COLOURS.get(status, "#9f9f9f")
    label, status = escape(label), escape(status.replace("_", " "))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + right}" height="20" role="img" '
        f'aria-label="{label}: {status}"><title>{label}: {status}</title>'
        f'<rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{label}</text><text x="{left + right / 2}" y="14">{status}</text></g></svg>\n'
    )


@hookimpl
def conveyor_build_finished(build, status, settings):
    path = badge_path(settings.data_dir, build.repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".svg.tmp")
    tmp.write_text(badge_svg("build", status), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a web server never serves half a badge
