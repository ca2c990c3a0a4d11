"""The check_params stage: a valid params.yaml gives the same marker bytes every time; a bad one is one line."""

import hashlib
import os

import yaml

from tasks.check_params import MARKER_TEXT, check_params, main
from tests.conftest import PROJECT_ROOT, project_params_document


def write_params(path, edit=None):
    document = project_params_document()
    if edit:
        edit(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_valid_file_writes_the_same_marker_whatever_its_values(tmp_path):
    marker = tmp_path / "data" / "params_check.txt"
    check_params(write_params(tmp_path / "params.yaml"), marker)
    first = marker.read_bytes()
    check_params(write_params(tmp_path / "params.yaml", lambda d: d["train"].update(epochs=3)), marker)

    assert marker.read_bytes() == first == MARKER_TEXT.encode()


def test_a_bad_value_is_one_line_naming_the_key_and_writes_nothing(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", lambda d: d["train"].update(unitz=128))

    code = main(["--params", str(params), "--root", str(tmp_path)])

    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("check_params failed: ConfigError: ") and "train.unitz: unknown key" in error
    assert "Traceback" not in error
    assert not (tmp_path / "data" / "params_check.txt").exists()


def test_the_marker_the_stage_writes_is_the_one_in_git_and_dvc_lock(tmp_path):
    check_params(PROJECT_ROOT / "params.yaml", tmp_path / "marker")

    (entry,) = yaml.safe_load((PROJECT_ROOT / "dvc.lock").read_text())["stages"]["check_params"]["outs"]
    assert entry["path"] == "data/params_check.txt"
    assert hashlib.md5((tmp_path / "marker").read_bytes()).hexdigest() == entry["md5"]
    assert (PROJECT_ROOT / entry["path"]).read_bytes() == (tmp_path / "marker").read_bytes()


def test_each_listed_dataset_gets_a_link_to_its_local_dir_or_an_empty_folder(tmp_path):
    photos = tmp_path / "photos"
    (photos / "train").mkdir(parents=True)
    root = tmp_path / "repo"
    root.mkdir()

    def listing(local_dir):
        def edit(document):
            document["datasets"] = ["custom", "mnist-sample"]
            document["data"]["custom"]["local_dir"] = local_dir
        return edit

    params = write_params(root / "params.yaml", listing(str(photos)))
    check_params(params, root / "marker", root)
    link = root / "data" / "sources" / "custom"
    assert link.is_symlink() and link.resolve() == photos and (link / "train").is_dir()
    placeholder = root / "data" / "sources" / "mnist-sample"  # no local_dir: a folder with only a placeholder
    assert [path.name for path in placeholder.iterdir()] == [".gitkeep"]

    check_params(write_params(root / "params.yaml", listing(str(tmp_path / "absent"))), root / "marker", root)
    assert not link.is_symlink() and [path.name for path in link.iterdir()] == [".gitkeep"]  # missing here

    check_params(write_params(root / "params.yaml", listing(str(photos))), root / "marker", root)
    assert link.is_symlink() and link.resolve() == photos


def test_a_relative_local_dir_gives_a_relative_link_that_holds_in_a_moved_clone(tmp_path):
    root = tmp_path / "repo"
    (root / "photos" / "train").mkdir(parents=True)

    def relative(document):
        document["datasets"] = ["custom"]
        document["data"]["custom"]["local_dir"] = "photos"

    check_params(write_params(root / "params.yaml", relative), root / "marker", root)
    moved = tmp_path / "elsewhere"
    root.rename(moved)

    link = moved / "data" / "sources" / "custom"
    assert not os.path.isabs(os.readlink(link)) and (link / "train").is_dir()
