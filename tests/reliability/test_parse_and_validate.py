"""Bad raw data stops the pipeline at validate (or at normalize's re-check) with the file and field named,
before training, and the last good run's data, model and reports stay byte-identical."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.lib import idx
from tasks.common.errors import DataValidationError, IDXFormatError
from tests.conftest import make_images
from tests.reliability.conftest import custom_params, run_pipeline_from_validate, snapshot

# Where validate puts the report of a failed validation: new by design, not an output of the last good run.
FAILED_REPORT = "reports/custom/failed_validation"


def _with_header_byte(payload: bytes, position: int, value: int) -> bytes:
    return payload[:position] + bytes([value]) + payload[position + 1:]


def labels_as_images(paths):
    return paths.raw_file("train", "labels").read_bytes()


def one_byte_short(paths):
    return paths.raw_file("train", "images").read_bytes()[:-1]


def one_byte_long(paths):
    return paths.raw_file("train", "images").read_bytes() + b"\0"


def float_type_code(paths):
    return _with_header_byte(paths.raw_file("train", "images").read_bytes(), 2, 0x0D)


IDX_FAULTS = {
    "labels file given as images": (labels_as_images, "magic number 2049 (labels) where 2051 (images, 3 dimensions)"),
    "payload 1 byte short": (one_byte_short, "but the file holds 47039 (-1); the file is truncated or corrupt"),
    "payload 1 byte long": (one_byte_long, "but the file holds 47041 (+1); the file is truncated or corrupt"),
    "unsupported IDX type code": (float_type_code, "unsupported IDX type code 0x0d; expected 0x08"),
}


@pytest.mark.parametrize("fault", IDX_FAULTS, ids=list(IDX_FAULTS))
def test_malformed_idx_file_is_named_and_nothing_is_touched(good_root, fault):
    corrupt, expected_message = IDX_FAULTS[fault]
    broken_file = good_root.raw_file("train", "images")
    broken_file.write_bytes(corrupt(good_root))
    before = snapshot(good_root.root)

    with pytest.raises(IDXFormatError) as raised:
        run_pipeline_from_validate(good_root, custom_params())

    assert str(raised.value).startswith(f"{broken_file}: ")
    assert expected_message in str(raised.value)
    assert snapshot(good_root.root) == before


def test_sixty_thousand_images_with_ten_thousand_labels(good_root):
    images_file, labels_file = good_root.raw_file("train", "images"), good_root.raw_file("train", "labels")
    images_file.write_bytes(idx.encode_idx(np.zeros((60_000, 28, 28), dtype=np.uint8)))
    labels_file.write_bytes(idx.encode_idx((np.arange(10_000) % 10).astype(np.uint8)))
    before = snapshot(good_root.root)

    with pytest.raises(DataValidationError) as raised:
        run_pipeline_from_validate(good_root, custom_params())

    assert str(raised.value).startswith(f"{images_file} holds 60000 images but {labels_file} holds 10000 labels")
    assert snapshot(good_root.root) == before


def _labels(paths, split="train"):
    return idx.read_labels(paths.raw_file(split, "labels")).copy()


def label_ten(paths):
    labels = _labels(paths)
    labels[7] = 10
    return "labels", labels


def label_255(paths):
    labels = _labels(paths)
    labels[3] = 255
    return "labels", labels


def class_missing(paths):
    labels = _labels(paths)
    labels[labels == 4] = 5
    return "labels", labels


def blank_image(paths):
    images = idx.read_images(paths.raw_file("train", "images")).copy()
    images[11] = 0
    return "images", images


def rows_not_28(paths):
    return "images", np.ascontiguousarray(make_images(60, seed=1)[0][:, :27, :])


def columns_not_28(paths):
    images = make_images(60, seed=1)[0]
    return "images", np.ascontiguousarray(np.concatenate([images, images[:, :, :1]], axis=2))


DATA_FAULTS = {
    "a label of 10": (label_ten, "label is an integer in 0..9", "rows [7] with values [10]"),
    "a label of 255": (label_255, "label is an integer in 0..9", "rows [3] with values [255]"),
    "one class missing": (class_missing, "all 10 classes present", "missing [4]"),
    "a blank image": (blank_image, "no all-blank image", "rows [11]"),
    "rows not 28": (rows_not_28, "image height is 28", "with values [27, 27, 27, 27, 27]"),
    "columns not 28": (columns_not_28, "image width is 28", "with values [29, 29, 29, 29, 29]"),
}


@pytest.mark.parametrize("fault", DATA_FAULTS, ids=list(DATA_FAULTS))
def test_bad_data_fails_validation_before_training(good_root, fault):
    corrupt, expectation, detail = DATA_FAULTS[fault]
    kind, array = corrupt(good_root)
    broken_file = good_root.raw_file("train", kind)
    broken_file.write_bytes(idx.encode_idx(array))
    before = snapshot(good_root.root)

    with pytest.raises(DataValidationError) as raised:
        run_pipeline_from_validate(good_root, custom_params())

    message = str(raised.value)
    (line,) = [line for line in message.splitlines() if expectation in line]
    assert line.startswith(f"  - {broken_file} [train]: ")
    assert detail in line
    assert snapshot(good_root.root, ignore=(FAILED_REPORT,)) == before
    assert (good_root.root / FAILED_REPORT / "validation.json").is_file()


def test_an_empty_split_fails_validation_naming_its_files(good_root):
    """An IDX file may declare 0 images; that split fails its expectations (it once crashed in NumPy instead)."""
    for kind, empty in (("images", np.zeros((0, 28, 28), dtype=np.uint8)), ("labels", np.zeros(0, dtype=np.uint8))):
        good_root.raw_file("train", kind).write_bytes(idx.encode_idx(empty))
    before = snapshot(good_root.root)

    with pytest.raises(DataValidationError) as raised:
        run_pipeline_from_validate(good_root, custom_params())

    assert f"  - {good_root.raw_file('train', 'labels')} [train]: all 10 classes present" in str(raised.value)
    assert snapshot(good_root.root, ignore=(FAILED_REPORT,)) == before


def nan_pixels(images):
    images = images.copy()
    images[5, 3, 3] = np.nan
    return images, "NaN in 1 images, e.g. rows [5]"


def above_one(images):
    return images * np.float32(255), "where [0, 1] was expected"


def normalized_twice(images):
    return images / np.float32(255), "<= 1/255: the data looks normalized twice"


PROCESSED_FAULTS = {"NaN": nan_pixels, "values > 1": above_one, "normalized twice": normalized_twice}


@pytest.mark.parametrize("fault", PROCESSED_FAULTS, ids=list(PROCESSED_FAULTS))
def test_bad_normalized_data_stops_before_training(good_root, fault):
    """The processed split changed after normalize wrote it (a bad copy, a second normalization): the train
    stage re-checks it on load and refuses it before fitting."""
    from tasks.lib.outputs import save_split
    from tasks.train import train_model

    processed = good_root.processed_file("train")
    with np.load(processed, allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    broken, expected_message = PROCESSED_FAULTS[fault](images)
    save_split(processed, broken.astype(np.float32), labels)
    before = snapshot(good_root.root)

    with pytest.raises(DataValidationError) as raised:
        train_model(good_root, custom_params().train_for("custom"))

    assert str(raised.value).startswith(f"{processed}: normalized data failed its checks: ")
    assert expected_message in str(raised.value)
    assert snapshot(good_root.root) == before
