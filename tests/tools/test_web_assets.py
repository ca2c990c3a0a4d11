"""The vendored web files are the pinned ones, and DVC's plots template is built from them."""

import configparser
import hashlib

from tasks.lib.offline_pages import CDN_FILE_NEEDS, CDN_FILES, VENDOR_DIR, dvc_plots_template
from tests.conftest import PROJECT_ROOT
from tools.web_assets import ASSETS


def test_every_vendored_file_has_its_pinned_sha256():
    for package, version, _, destination, digest in ASSETS:
        content = (VENDOR_DIR / destination).read_bytes()
        assert hashlib.sha256(content).hexdigest() == digest, f"{destination} ({package}@{version})"


def test_every_file_the_pages_use_is_vendored_and_nothing_else_is():
    listed = {destination for *_, destination, _ in ASSETS}
    used = {*CDN_FILES.values(), *(need for needs in CDN_FILE_NEEDS.values() for need in needs)}
    on_disk = {str(path.relative_to(VENDOR_DIR)) for path in VENDOR_DIR.rglob("*") if path.is_file()}
    assert used == listed == on_disk


def test_dvc_uses_the_committed_plots_template_and_it_is_the_one_built_from_the_vendored_files():
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / ".dvc" / "config")
    template = PROJECT_ROOT / ".dvc" / config["plots"]["html_template"]

    assert template.read_text(encoding="utf-8") == dvc_plots_template()
    assert "<script src=" not in template.read_text(encoding="utf-8")  # nothing loaded from elsewhere
