"""Great Expectations' Data Docs made readable offline.

GX writes each Data Docs page with its scripts, styles and fonts loaded from CDNs (jQuery, Bootstrap,
bootstrap-table, Vega, Font Awesome). Offline, as many training machines are, the pages rendered unstyled and the
index listed no validations: bootstrap-table, which fills that list, never loaded. `make_offline` copies the
files from `vendor/web/` (pinned, fetched by tools/web_assets.py) into the Data Docs' own `static/vendor/` and
points every page at them by a relative path, so the folder is whole wherever it is copied. The same files make
`dvc plots show` readable offline (`dvc_plots_template`, the HTML template .dvc/config names).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).resolve().parents[2] / "vendor" / "web"
# Each remote file GX's pages load (great_expectations/render/view/templates), and the vendored file that replaces it.
CDN_FILES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega/vega-embed.min.js",
}
# Files a vendored file loads in turn (Font Awesome's stylesheet: its fonts, at ../webfonts/).
CDN_FILE_NEEDS = {"fontawesome/css/all.min.css": ("fontawesome/webfonts/fa-solid-900.woff2",
                                                  "fontawesome/webfonts/fa-regular-400.woff2",
                                                  "fontawesome/webfonts/fa-brands-400.woff2")}
# GX's logo, an image on its web server: shown as its alt text offline.
_REMOTE_LOGO = re.compile(r'src="https://great-expectations-web-assets\.[^"]*"')
_REMOTE_RESOURCE = re.compile(r'<(?:script|img)[^>]*\ssrc="(https?://[^"]+)"|<link[^>]*\shref="(https?://[^"]+)"')
VENDOR_SUBDIR = Path("static") / "vendor"


def make_offline(docs_dir: Path) -> list[str]:
    """Point every page under `docs_dir` at vendored copies of its remote scripts, styles and fonts; return the
    remote resources still loaded (none with the GX version in requirements.lock; a new one is logged)."""
    docs_dir = Path(docs_dir)
    vendor = docs_dir / VENDOR_SUBDIR
    for relative in {*CDN_FILES.values(), *(need for needs in CDN_FILE_NEEDS.values() for need in needs)}:
        (vendor / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(VENDOR_DIR / relative, vendor / relative)
    remaining = set()
    for page in docs_dir.rglob("*.html"):
        prefix = os.path.relpath(vendor, page.parent)
        text = page.read_text(encoding="utf-8")
        for url, relative in CDN_FILES.items():
            text = text.replace(f'"{url}"', f'"{prefix}/{relative}"')
        text = _REMOTE_LOGO.sub('src=""', text)
        page.write_text(text, encoding="utf-8")
        remaining |= {script or link for script, link in _REMOTE_RESOURCE.findall(text)}
    if remaining:
        logger.warning("Data Docs still load %d remote file(s) offline pages lack (add them to tools/web_assets.py "
                       "and tasks/lib/offline_pages.py): %s", len(remaining), sorted(remaining))
    return sorted(remaining)


def dvc_plots_template() -> str:
    """An HTML template for `dvc plots show/diff` with Vega, Vega-Lite and Vega-Embed inlined: DVC's own page loads
    them from a CDN and is blank offline. Without a `{scripts}` placeholder, DVC adds no remote script."""
    scripts = "\n".join(f"<script>{(VENDOR_DIR / name).read_text(encoding='utf-8')}</script>"
                        for name in ("vega/vega.min.js", "vega/vega-lite.min.js", "vega/vega-embed.min.js"))
    return ("<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<title>DVC Plot</title>\n"
            "<!-- Vega, Vega-Lite and Vega-Embed from vendor/web/ (python -m tools.web_assets), so the page works "
            "offline; written by tasks/lib/offline_pages.py -->\n" + scripts +
            "\n<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")
