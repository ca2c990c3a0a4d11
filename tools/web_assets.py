"""The scripts, styles and fonts the offline pages need, from npm, pinned: `python -m tools.web_assets`.

Great Expectations' Data Docs and `dvc plots show` load them from CDNs, so on an offline machine (many training
machines are) the Data Docs render unstyled and list no validations, and DVC's plots page is blank. The files are
kept in `vendor/web/` (in git: a fresh clone works offline) and checked by SHA-256 against this list
(tests/tools/test_web_assets.py); this command fetches them again from the npm registry, e.g. to move a version.
`tasks/lib/offline_pages.py` points the pages at them.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent.parent / "vendor" / "web"
REGISTRY = "https://registry.npmjs.org"

# (npm package, version, file in its tarball (under package/), file under vendor/web/, its SHA-256)
ASSETS: list[tuple[str, str, str, str, str]] = [
    ("jquery", "3.7.1", "dist/jquery.min.js", "jquery/jquery.min.js",
     "fc9a93dd241f6b045cbff0481cf4e1901becd0e12fb45166a8f17f95823f0b1a"),
    ("popper.js", "1.12.9", "dist/umd/popper.min.js", "popper/popper.min.js",
     "a52f7aa54d7bcaafa056ee0a050262dfc5694ae28dee8b4cac3429af37ff0d66"),
    ("bootstrap", "4.3.1", "dist/js/bootstrap.min.js", "bootstrap/bootstrap.min.js",
     "0a34a87842c539c1f4feec56bba982fd596b73500046a6e6fe38a22260c6577b"),
    ("bootstrap", "4.3.1", "dist/css/bootstrap.min.css", "bootstrap/bootstrap.min.css",
     "60b19e5da6a9234ff9220668a5ec1125c157a268513256188ee80f2d2c8d8d36"),
    ("bootstrap-table", "1.19.1", "dist/bootstrap-table.min.js", "bootstrap-table/bootstrap-table.min.js",
     "06a571a9beb50bd5ddd60517159775dfec1f3e798fff38fb117ae2350dc9ba9d"),
    ("bootstrap-table", "1.19.1", "dist/bootstrap-table.min.css", "bootstrap-table/bootstrap-table.min.css",
     "643f536f6982af4d7287af23f89ad457dd7e4a82f9c695330a112b0881c30a4a"),
    ("bootstrap-table", "1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
     "bootstrap-table/bootstrap-table-filter-control.min.js",
     "111f68d31d1bdd714f9503bf5f4e162e0739c363e4ff2feef950d39e78266ffc"),
    ("bootstrap-table", "1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
     "bootstrap-table/bootstrap-table-filter-control.min.css",
     "be4e0c0d11f9319f1ad191f7447a38f755728bbaa10903e469f367441ba79ae2"),
    ("bootstrap-datepicker", "1.9.0", "dist/js/bootstrap-datepicker.min.js",
     "bootstrap-datepicker/bootstrap-datepicker.min.js",
     "6ea55ea86749ee1fe560fabac6b3effd81b33046fa74dc657e24d41d28110a9f"),
    ("bootstrap-datepicker", "1.9.0", "dist/css/bootstrap-datepicker.min.css",
     "bootstrap-datepicker/bootstrap-datepicker.min.css",
     "b22c8ea45fe905650f8087108b5ed32c1923bcd80d400adc9b0241f18be40208"),
    ("@forevolve/bootstrap-dark", "1.1.0", "dist/css/bootstrap-prefers-dark.min.css",
     "bootstrap-dark/bootstrap-prefers-dark.min.css",
     "424070f1f798087a68c110a776228f9eaae5406df143940faa67d77344293ac8"),
    ("@fortawesome/fontawesome-free", "6.6.0", "css/all.min.css", "fontawesome/css/all.min.css",
     "e5e202e3c899507992952533f57b634722b69b34241d271963559d31aa33ef81"),
    ("@fortawesome/fontawesome-free", "6.6.0", "webfonts/fa-solid-900.woff2", "fontawesome/webfonts/fa-solid-900.woff2",
     "1f0189e087fcefbf654fad74a3a06668b782c01353a61d5c0b7f0bf23e33c020"),
    ("@fortawesome/fontawesome-free", "6.6.0", "webfonts/fa-regular-400.woff2",
     "fontawesome/webfonts/fa-regular-400.woff2",
     "c732f106e91bc618767fbac8e2c7b27e5c736d477b2bb4fb83f597a43198c33c"),
    ("@fortawesome/fontawesome-free", "6.6.0", "webfonts/fa-brands-400.woff2",
     "fontawesome/webfonts/fa-brands-400.woff2",
     "c411f11975d26eb04cd2aa3c071181d4b18e489f1fb97060d4176a3531dfb36e"),
    ("vega", "5.33.0", "build/vega.min.js", "vega/vega.min.js",
     "a71f14828abacac82fbe8adb07ce65cbb82561d8eef188053c4a1c09e0164dcb"),
    ("vega-lite", "5.23.0", "build/vega-lite.min.js", "vega/vega-lite.min.js",
     "58c27358e26f2d319cf62f45bc17a4c8362f08645001df2ec8d341eee4097c7f"),
    ("vega-embed", "6.29.0", "build/vega-embed.min.js", "vega/vega-embed.min.js",
     "12d02acfbe3ec59ef9a37dd4822a2e04e2961b5bbb671bbe661d2221715b99da"),
]


def tarball_url(package: str, version: str) -> str:
    return f"{REGISTRY}/{package}/-/{package.rsplit('/', 1)[-1]}-{version}.tgz"


def fetch(vendor_dir: Path = VENDOR_DIR) -> list[tuple[str, str]]:
    """Download each package once, write the listed files; return (vendor path, SHA-256) of each."""
    tarballs: dict[tuple[str, str], bytes] = {}
    written = []
    for package, version, member, destination, _ in ASSETS:
        if (package, version) not in tarballs:
            with urllib.request.urlopen(tarball_url(package, version), timeout=60) as response:
                tarballs[(package, version)] = response.read()
        with tarfile.open(fileobj=io.BytesIO(tarballs[(package, version)])) as archive:
            extracted = archive.extractfile(f"package/{member}")
            if extracted is None:
                raise RuntimeError(f"{package} {version}: package/{member} is not a file in its tarball")
            content = extracted.read()
        target = vendor_dir / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        written.append((destination, hashlib.sha256(content).hexdigest()))
    return written


def main() -> int:
    for destination, digest in fetch():
        print(f"{digest}  {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
