import numpy as np
import pytest
from PIL import Image

from tools.predict import ImageFileError, image_to_input, main, predict_files
from tasks.lib.predictions import load_model

DIGITS = tuple(str(digit) for digit in range(10))


def save_a_one(path):
    """A light stroke on black, as MNIST's digits: something to classify (an all-black image is refused as blank)."""
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[4:24, 13:15] = 255
    Image.fromarray(pixels).save(path)


# Predict on PNG files agrees with Keras for every architecture: tests/tasks/test_every_architecture.py.


def test_large_colour_photo_with_light_background_becomes_a_training_like_input(tmp_path):
    photo = np.full((300, 200, 3), 240, dtype=np.uint8)   # light background
    photo[100:200, 60:140] = (20, 30, 200)                 # a dark blue object
    Image.fromarray(photo).save(tmp_path / "photo.jpg")

    pixels = image_to_input(tmp_path / "photo.jpg")

    assert pixels.shape == (28, 28) and pixels.dtype == np.float32
    assert pixels[0, 0] < 0.1 and pixels[14, 14] > 0.6   # background dark, object light, as in training


def test_not_an_image_is_named(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")

    with pytest.raises(ImageFileError, match=r"notes.png: not an image PIL can read"):
        image_to_input(text)
    with pytest.raises(ImageFileError, match=r"absent.png: no such file"):
        image_to_input(tmp_path / "absent.png")


def test_command_prints_top_three_and_fails_clearly(trained_digits, tmp_path, capsys, monkeypatch):
    from tests.conftest import PROJECT_ROOT

    image = tmp_path / "digit.png"
    save_a_one(image)
    monkeypatch.chdir(trained_digits.root)

    assert main([str(image), "--dataset", "mnist-sample", "--params", str(PROJECT_ROOT / "params.yaml")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count("%") == 3

    assert main([str(tmp_path / "missing.png"), "--dataset", "mnist-sample",
                 "--params", str(PROJECT_ROOT / "params.yaml")]) == 1
    assert f"cannot be classified: {tmp_path / 'missing.png'}: no such file" in capsys.readouterr().err


def test_each_bad_file_gets_one_line_and_the_good_ones_their_classes(trained_digits, tmp_path, capsys, monkeypatch):
    """Issue 30 item 6: 4 good and 4 bad files printed "4 of 8 files cannot be classified" and no prediction."""
    from tests.conftest import PROJECT_ROOT

    good = [tmp_path / f"digit-{number}.png" for number in range(4)]
    for path in good:
        save_a_one(path)
    text, blank, empty = tmp_path / "notes.png", tmp_path / "blank.png", tmp_path / "empty.jpg"
    text.write_text("not a picture")
    Image.new("L", (300, 300), color=255).save(blank)
    empty.write_bytes(b"")
    files = [good[0], text, good[1], tmp_path / "absent.png", good[2], blank, good[3], empty]
    monkeypatch.chdir(trained_digits.root)

    code = main([*map(str, files), "--dataset", "mnist-sample", "--params", str(PROJECT_ROOT / "params.yaml")])

    out, err = capsys.readouterr()
    assert code == 1  # some files could not be classified
    assert [line.split(": ")[0] for line in out.splitlines()] == list(map(str, good))
    assert all(line.count("%") == 3 for line in out.splitlines())
    problems = err.strip().splitlines()
    assert len(problems) == 5 and problems[-1].startswith("predict: 4 of 8 files cannot be classified")
    for line, bad in zip(problems, (text, tmp_path / "absent.png", blank, empty)):
        assert line.startswith(f"cannot be classified: {bad}: "), line
    assert "Traceback" not in err


def test_predictions_come_per_file_in_order(trained_digits, tmp_path):
    good = tmp_path / "digit.png"
    save_a_one(good)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")

    predictions = predict_files(trained_digits.runtime_model_file, [text, good, tmp_path / "absent.png"], DIGITS)

    assert [prediction.file for prediction in predictions] == [text, good, tmp_path / "absent.png"]
    assert predictions[0].top is None and "notes.png: not an image PIL can read" in predictions[0].problem
    assert predictions[1].top is not None and len(predictions[1].top) == 3 and predictions[1].problem is None
    assert predictions[2].top is None and "absent.png: no such file" in predictions[2].problem


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n not a model", b"PK\x03\x04 truncated zip"])
def test_a_file_that_is_not_a_model_is_named_with_what_was_expected(tmp_path, content):
    from tasks.common.errors import ModelFileError
    from tasks.lib.inference import load_network

    for name, loader, expected in [("model.onnx", load_network, "expected an ONNX model exported by the train stage"),
                                   ("model.keras", load_model, "expected a Keras 3 `.keras` model that loads in safe mode")]:
        not_a_model = tmp_path / name
        not_a_model.write_bytes(content)

        with pytest.raises(ModelFileError, match=rf"{name}: {expected}"):
            loader(not_a_model)


def png_header_only(path, width, height):
    """A PNG that declares width x height and holds no pixel data: what PIL reads before it decodes anything."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("width", "height"), [(12000, 12000), (8000, 6251)])
def test_a_huge_image_is_refused_by_its_header_naming_its_size_before_decoding(tmp_path, width, height):
    """20000x20000 once ended in PIL's DecompressionBombError traceback; 12000x12000 took 1.46 GB (issue 16)."""
    path = png_header_only(tmp_path / "huge.png", width, height)

    with pytest.raises(ImageFileError) as raised:
        image_to_input(path)

    assert str(raised.value) == (f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels; at most 50 "
                                 "are accepted (resize it first, e.g. to 1000x1000)")


def test_an_image_past_pils_own_limit_is_refused_in_one_line_too(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)

    with pytest.raises(ImageFileError) as raised:
        image_to_input(path)

    message = str(raised.value)
    assert message.startswith(f"{path}: too large: Image size (400000000 pixels) exceeds limit of ")
    assert message.endswith("at most 50 megapixels are accepted (resize it first, e.g. to 1000x1000)")


def test_a_phone_sized_photo_is_decoded(tmp_path):
    path = tmp_path / "photo.png"
    photo = Image.new("L", (5000, 4000), color=255)  # 20 megapixels: a phone photo
    photo.paste(0, (2000, 1000, 3000, 3000))  # of a dark object
    photo.save(path)

    assert image_to_input(path).shape == (28, 28)


def test_a_blank_photo_is_not_classified_and_says_so(tmp_path, capsys):
    """Issue 16: a white 300x300 image was "Sandal 75.3%" with no warning. It is refused before any model loads."""
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 300), color=255).save(blank)

    assert main([str(blank), "--model", str(tmp_path / "never-loaded.onnx")]) == 1
    out, error = capsys.readouterr()
    assert out == ""
    assert f"{blank}: no object found: every pixel is within 32 grey levels of the background" in error
    assert "Traceback" not in error
