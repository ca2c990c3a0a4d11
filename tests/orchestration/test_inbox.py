"""orchestration/inbox.py (`make ingest`): copy a drop into the inbox safely and announce it. The event reaching a
served deployment is tests/integration/test_triggers.py; here, the copy and what is said without a server."""

import pytest

from orchestration.inbox import copy_into_inbox, main
from tasks.common.errors import PipelineError
from tests.conftest import PROJECT_ROOT, real_fashion_images, write_image_folder


def test_a_drop_is_copied_file_by_file_under_its_layout_and_no_temporary_name_is_left(tmp_path):
    written = write_image_folder(tmp_path / "new", {"train": real_fashion_images(12)}, [str(i) for i in range(10)])
    (tmp_path / "new" / ".DS_Store").write_bytes(b"\0")

    copied = copy_into_inbox(tmp_path / "new", tmp_path / "inbox")

    assert copied == 12
    assert sorted(path.relative_to(tmp_path / "inbox") for path in (tmp_path / "inbox").rglob("*") if path.is_file()) \
        == sorted(path.relative_to(tmp_path / "new") for path in written)


def test_without_a_served_prefect_the_files_wait_for_the_next_run_and_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "new", {"train": real_fashion_images(3)}, [str(i) for i in range(10)])

    code = main(["--dataset", "mnist-sample", "--from", str(tmp_path / "new"), "--params",
                 str(PROJECT_ROOT / "params.yaml")])

    assert code == 0
    assert capsys.readouterr().out.strip() == (
        f"copied 3 file(s); 3 file(s) wait in {tmp_path}/data/inbox/mnist-sample; no served Prefect (make serve) to "
        "tell, so they are ingested by the next `dvc repro`, `make flow` or scheduled run")


@pytest.mark.parametrize("arguments, says", [
    (["--dataset", "mnist"], "dataset 'mnist' is not listed under `datasets` in params.yaml"),
    (["--dataset", "mnist-sample"], "data/inbox/mnist-sample: no images waiting; copy them into"),
    (["--dataset", "mnist-sample", "--from", "absent"], "absent: no such folder; expected absent/{train,test}/<class>/"),
])
def test_a_mistake_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys, arguments, says):
    monkeypatch.chdir(tmp_path)

    assert main([*arguments, "--params", str(PROJECT_ROOT / "params.yaml")]) == 1
    error = capsys.readouterr().err
    assert says in error and error.count("\n") == 1


def test_a_drop_never_replaces_a_file_still_waiting_under_the_same_name(tmp_path):
    write_image_folder(tmp_path / "first", {"train": real_fashion_images(3)}, [str(i) for i in range(10)])
    write_image_folder(tmp_path / "second", {"train": real_fashion_images(3)}, [str(i) for i in range(10)])
    copy_into_inbox(tmp_path / "first", tmp_path / "inbox")
    before = {path: path.read_bytes() for path in (tmp_path / "inbox").rglob("*.png")}

    with pytest.raises(PipelineError, match=r"3 file\(s\) of .*second would replace files still waiting in the "
                                            r"inbox, e.g. .*; nothing was copied"):
        copy_into_inbox(tmp_path / "second", tmp_path / "inbox")
    assert {path: path.read_bytes() for path in (tmp_path / "inbox").rglob("*.png")} == before
