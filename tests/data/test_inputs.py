"""Every input format the scoring flow reads, and every way an input can be bad."""


import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mnist_autoencoder.data.inputs import InputError, open_input
from mnist_autoencoder.data.pixels import as_unit_pixels
from tests.helpers import make_digits, write_idx


def read_all(location):
    chunks = list(open_input(location).iter_chunks(chunk=7))
    return (np.concatenate([c.x for c in chunks]), np.concatenate([c.labels for c in chunks]),
            [c.name(i) for c in chunks for i in range(len(c.x))])


@pytest.fixture
def digits():
    return make_digits(20, seed=3)



def write_pngs(directory, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
        (directory / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(directory / str(label) / f"{i:03d}.png")
    return directory


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_with_and_without_labels(tmp_path, digits, gz):
    images, labels = digits
    x, y, names = read_all(write_idx(tmp_path / "a", images, labels, gz=gz))
    np.testing.assert_allclose(x, images.reshape(20, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert names[19].endswith("-images-idx3-ubyte" + (".gz" if gz else "") + "#19")
    _, y, _ = read_all(write_idx(tmp_path / "b", images))
    assert (y == -1).all()  # no labels file: unknown


def test_parquet_uint8_and_float_pixels_with_optional_label(tmp_path, digits):
    images, labels = digits
    flat = images.reshape(20, -1)
    pd.DataFrame({"pixels": list(flat), "label": labels}).to_parquet(tmp_path / "u8.parquet")
    pd.DataFrame({"pixels": list(flat / 255.0)}).to_parquet(tmp_path / "f.parquet")
    x8, y8, _ = read_all(tmp_path / "u8.parquet")
    xf, yf, _ = read_all(tmp_path / "f.parquet")
    np.testing.assert_allclose(x8, xf, atol=1e-6)
    np.testing.assert_array_equal(y8, labels)
    assert (yf == -1).all()


def test_png_folders_give_labels_from_digit_named_parents(tmp_path, digits):
    images, labels = digits
    root = write_pngs(tmp_path / "pngs", images, labels)
    Image.fromarray(images[0]).save(root / "loose.png")  # not in a digit folder: unknown
    x, y, names = read_all(root)
    assert len(x) == 21 and "loose.png" in names
    assert y[names.index("loose.png")] == -1
    assert sorted(y[y >= 0]) == sorted(labels)


def test_npy_flat_or_square(tmp_path, digits):
    images, _ = digits
    np.save(tmp_path / "square.npy", images)
    np.save(tmp_path / "flat.npy", images.reshape(20, -1) / 255.0)
    np.testing.assert_allclose(read_all(tmp_path / "square.npy")[0],
                               read_all(tmp_path / "flat.npy")[0], atol=1e-6)


def test_fingerprint_follows_content_not_location(tmp_path, digits):
    images, labels = digits
    a = open_input(write_idx(tmp_path / "a", images, labels)).fingerprint()
    assert a == open_input(write_idx(tmp_path / "b", images, labels)).fingerprint()
    images[0, 0, 0] ^= 1
    assert a != open_input(write_idx(tmp_path / "c", images, labels)).fingerprint()


def bad_inputs(tmp_path, digits):
    images, labels = digits
    yield "32x32", write_idx(tmp_path / "big", make_digits(4, 0, side=32)[0]), "32x32"
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(rgb / "a.png")
    yield "rgb png", rgb, "a RGB image"
    corrupt = write_pngs(tmp_path / "corrupt", images[:2], labels[:2])
    (corrupt / str(labels[0]) / "000.png").write_bytes(b"\x89PNG not really")
    yield "corrupt png", corrupt, "not a readable PNG"
    (tmp_path / "empty").mkdir()
    yield "empty dir", tmp_path / "empty", "an empty directory"
    mixed = write_pngs(tmp_path / "mixed", images[:2], labels[:2])
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(mixed / "odd.png")
    yield "mixed sizes", mixed, "odd.png: 30x30 pixels"
    np.save(tmp_path / "nan.npy", np.full((3, 784), np.nan, np.float32))
    yield "nan", tmp_path / "nan.npy", "NaN"
    np.save(tmp_path / "range.npy", np.full((3, 784), 2.0, np.float32))
    yield "out of range", tmp_path / "range.npy", "must be in [0, 1]"
    yield "labels", write_idx(tmp_path / "lab", images, (labels + 5).astype(np.uint8)), "0-9"
    yield "counts", write_idx(tmp_path / "cnt", images, labels[:-1]), "holds 20 images but"
    pd.DataFrame({"pixels": [np.zeros(100, np.uint8)]}).to_parquet(tmp_path / "short.parquet")
    yield "short parquet", tmp_path / "short.parquet", "must hold 784 values"
    pd.DataFrame({"image": [1]}).to_parquet(tmp_path / "nopix.parquet")
    yield "no pixels column", tmp_path / "nopix.parquet", "no 'pixels' column"
    yield "missing", tmp_path / "nowhere", "no such file or directory"
    (tmp_path / "notes.txt").write_text("hello")
    yield "other file", tmp_path / "notes.txt", "not an input this reads"


def test_every_bad_input_is_refused_naming_the_file_and_the_problem(tmp_path, digits):
    for case, location, message in bad_inputs(tmp_path, digits):
        with pytest.raises(InputError) as excinfo:
            read_all(location)
        text = str(excinfo.value)
        assert message in text, (case, text)
        assert str(tmp_path) in text, (case, text)  # names the file


def test_chunks_keep_uint8_pixels_and_derive_floats_only_when_asked(tmp_path, digits):
    images, labels = digits
    flat = images.reshape(20, -1)
    write_idx(tmp_path / "idx", images, labels)
    pd.DataFrame({"pixels": list(flat.astype(np.int64)), "label": labels}).to_parquet(
        tmp_path / "int.parquet")
    pd.DataFrame({"pixels": list(flat / 255.0), "label": labels}).to_parquet(
        tmp_path / "float.parquet")
    for location in (tmp_path / "idx", tmp_path / "int.parquet", tmp_path / "float.parquet"):
        (chunk,) = open_input(location).iter_chunks()
        assert "x" not in vars(chunk)  # nothing converted yet
        np.testing.assert_array_equal(chunk.u8, flat)  # the 256 levels, exactly
        np.testing.assert_array_equal(chunk.x, as_unit_pixels(flat, "f"))
        assert chunk.x.dtype == np.float32 and len(chunk) == 20
    (chunk,) = open_input(tmp_path / "idx").iter_chunks()
    assert chunk.pixels.dtype == np.uint8 and chunk.u8 is chunk.pixels  # no copy for ingest
    pd.DataFrame({"pixels": list(flat.astype(np.int64) + 1)}).to_parquet(tmp_path / "big.parquet")
    with pytest.raises(InputError, match="integer pixels must be in 0-255, found 1..256"):
        list(open_input(tmp_path / "big.parquet").iter_chunks())
