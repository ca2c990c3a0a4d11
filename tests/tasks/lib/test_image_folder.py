"""tasks/lib/image_folder.py: the <root>/{train,test}/<class>/ layout read into arrays, every problem named."""

import numpy as np
import pytest

from tasks.common.errors import ImageFileError
from tasks.lib.image_folder import read_image_folder, scan_layout
from tests.conftest import real_fashion_images, write_image_folder

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FOLDERS = [name.replace("/", "-") for name in FASHION]


@pytest.fixture
def fashion_folder(tmp_path):
    """60 train and 20 test real Fashion-MNIST images as PNG files in class-name folders."""
    train, test = real_fashion_images(60, "train"), real_fashion_images(20, "test")
    write_image_folder(tmp_path / "shop", {"train": train, "test": test}, FOLDERS)
    return tmp_path / "shop", train, test


def sorted_by_label(images, labels):
    """What the folder gives back: classes in index order, files in name (= row) order within a class."""
    order = np.argsort(labels, kind="stable")
    return images[order], labels[order]


def test_class_name_folders_give_back_the_real_images_and_labels(fashion_folder):
    root, train, test = fashion_folder

    arrays = read_image_folder(root, FASHION)

    for split, original in (("train", train), ("test", test)):
        images, labels = arrays[split]
        expected_images, expected_labels = sorted_by_label(*original)
        assert labels.dtype == np.uint8 and np.array_equal(labels, expected_labels)
        assert np.array_equal(images, expected_images)
    assert (root / "train" / "T-shirt-top").is_dir()  # 'T-shirt/top' cannot be a folder name


def test_index_folders_and_jpeg_files_are_read_as_their_class(tmp_path):
    train, test = real_fashion_images(30, "train"), real_fashion_images(10, "test")
    write_image_folder(tmp_path / "x", {"train": train, "test": test}, [str(i) for i in range(10)], suffix=".jpg")

    images, labels = read_image_folder(tmp_path / "x", FASHION)["train"]

    expected_images, expected_labels = sorted_by_label(*train)
    assert np.array_equal(labels, expected_labels)
    assert np.abs(images.astype(int) - expected_images).mean() < 3  # JPEG: close, not exact


def test_three_classes_of_digits(tmp_path):
    from tasks.lib.mnist_sample import build_mnist_sample

    arrays = build_mnist_sample()
    keep = {split: np.isin(arrays[(split, "labels")], [0, 1, 2]) for split in ("train", "test")}
    splits = {split: (arrays[(split, "images")][keep[split]][:40], arrays[(split, "labels")][keep[split]][:40])
              for split in keep}
    write_image_folder(tmp_path / "digits", splits, ["zero", "one", "two"])

    read = read_image_folder(tmp_path / "digits", ("zero", "one", "two"))

    assert set(np.unique(read["train"][1])) == {0, 1, 2} and len(read["test"][0]) == 40


def test_every_problem_is_named_at_once_and_hidden_files_are_not_read(fashion_folder):
    root, _, _ = fashion_folder
    (root / "train" / "Sandal" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (root / "train" / "Sandal" / "empty.png").write_bytes(b"")
    (root / "train" / "Hats").mkdir()
    (root / "train" / "Hats" / "hat.png").write_bytes((root / "test" / "Bag").glob("*.png").__next__().read_bytes())
    (root / "loose.png").write_bytes(b"x")
    (root / "train" / "Bag" / "notes.txt").write_text("x")
    (root / "train" / "Bag" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "Bag" / ".copying.png.part").write_bytes(b"\0")

    with pytest.raises(ImageFileError) as raised:
        read_image_folder(root, FASHION)

    lines = str(raised.value).splitlines()
    assert lines[0] == f"{root}: 5 problem(s) in the image folder:"
    assert f"  - {root}/loose.png: outside the layout: images go in {root}/{{train,test}}/<class>/" in lines
    assert (f"  - {root}/train/Hats/hat.png: unknown class folder 'Hats'; expected a class folder (T-shirt-top, "
            "Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot) or a class index 0..9") in lines
    assert f"  - {root}/train/Bag/notes.txt: suffix '.txt' is not an image suffix (.png, .jpg, .jpeg)" in lines
    assert f"  - {root}/train/Sandal/empty.png: the file is empty (0 bytes); expected a PNG or JPEG image" in lines
    assert any(line.startswith(f"  - {root}/train/Sandal/corrupt.png: not an image PIL can read") for line in lines)


def test_a_missing_folder_and_an_empty_split_say_what_the_layout_is(tmp_path):
    with pytest.raises(ImageFileError, match=r"absent: no such folder \(data.<dataset>.local_dir\); expected an "
                                             r"image folder .*absent/train/<class>/\*.png"):
        read_image_folder(tmp_path / "absent", FASHION)
    write_image_folder(tmp_path / "half", {"train": real_fashion_images(5, "train")}, FOLDERS)
    with pytest.raises(ImageFileError, match=r"half/test: no images \(expected .*half/test/<class>/\*.png or \*.jpg\)"):
        read_image_folder(tmp_path / "half", FASHION)


def test_a_class_named_like_another_class_index_keeps_its_own_folder(tmp_path):
    images, _ = real_fashion_images(2)
    write_image_folder(tmp_path / "r", {"train": (images, np.array([0, 1], np.uint8))}, ["1", "0"])

    found, misplaced = scan_layout(tmp_path / "r", ("1", "0"))

    assert not misplaced
    assert [(image.path.parent.name, image.label) for image in found] == [("1", 0), ("0", 1)]


def test_a_class_folder_in_decomposed_unicode_is_its_class(tmp_path):
    """A zip made on macOS holds folder names in decomposed Unicode (NFD): 'größe' as 'gro\\u0308\\xdfe'. It is the
    class params.yaml names in composed form (and the other way round); both are compared in NFC."""
    import unicodedata

    names = ("Schuhe-größe", "Stiefel")
    train, test = real_fashion_images(20, "train"), real_fashion_images(10, "test")
    binary = {split: (images[labels < 2], labels[labels < 2]) for split, (images, labels)
              in (("train", train), ("test", test))}
    write_image_folder(tmp_path / "zip", binary, [unicodedata.normalize("NFD", name) for name in names])
    assert (tmp_path / "zip" / "train" / unicodedata.normalize("NFD", names[0])).is_dir()

    files, misplaced = scan_layout(tmp_path / "zip", names)
    decomposed_params, _ = scan_layout(tmp_path / "zip", tuple(unicodedata.normalize("NFD", n) for n in names))

    assert misplaced == []
    assert sorted(image.label for image in files) == sorted(binary["train"][1].tolist() + binary["test"][1].tolist())
    assert len(decomposed_params) == len(files)
