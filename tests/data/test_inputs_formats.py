"""The input formats are one registry: adding one is one entry, and every list follows it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_autoencoder.data import ingestion, inputs
from mnist_autoencoder.data.inputs import (
    FORMATS,
    NO_LABEL,
    Chunk,
    Format,
    InputError,
    describe_formats,
    file_with_suffix,
    format_of,
    formats_table,
    is_url,
    open_input,
)
from mnist_autoencoder.data.pixels import as_unit_pixels
from mnist_autoencoder.params import ParameterError, validate_images
from tests.helpers import PROJECT, make_digits


# A whole new format, defined here and nowhere else: 784 comma-separated ints per line.
def _txt_rows(found):
    return [line for line in found.files[0].read_text().splitlines() if line.strip()]


def _txt_chunks(found, chunk):
    rows = _txt_rows(found)
    for start in range(0, len(rows), chunk):
        part = np.array([[int(v) for v in row.split(",")] for row in rows[start:start + chunk]])
        yield Chunk(found.files[0].name, np.arange(start, start + len(part)),
                    as_unit_pixels(part, str(found.files[0])), np.full(len(part), NO_LABEL,
                                                                       np.int16))


TXT = Format(name="txt", accepts="a .txt file of 784 comma-separated integers per line",
             labels=None, details="uint8 0-255", recognises=file_with_suffix(".txt"),
             count=lambda found: len(_txt_rows(found)), chunks=_txt_chunks)


@pytest.fixture
def with_txt(monkeypatch):
    monkeypatch.setattr(inputs, "FORMATS", (*FORMATS, TXT))  # the one place a format goes


def test_a_format_registered_in_one_place_is_read_counted_and_listed(tmp_path, with_txt):
    images, _ = make_digits(7, seed=5)
    path = tmp_path / "digits.txt"
    path.write_text("\n".join(",".join(map(str, row)) for row in images.reshape(7, -1)))
    found = open_input(path)
    assert found.format is TXT and found.kind == "txt" and found.count() == 7
    chunks = list(found.iter_chunks(chunk=3))
    assert [len(c.x) for c in chunks] == [3, 3, 1]
    np.testing.assert_allclose(np.concatenate([c.x for c in chunks]),
                               images.reshape(7, -1) / 255, rtol=1e-6)
    assert chunks[2].name(0) == "digits.txt#6"
    shards = [list(found.iter_chunks(shard=k, shards=2)) for k in range(2)]
    assert sum(len(c.x) for shard in shards for c in shard) == 7
    assert found.fingerprint() == open_input(path).fingerprint()
    # every list of formats follows the registry
    assert "txt: a .txt file of 784" in describe_formats()
    assert "txt" not in describe_formats(labelled_only=True)  # no labels: not for ingest
    assert "| `txt` |" in formats_table()
    with pytest.raises(ParameterError, match="txt: a .txt file"):
        validate_images("input", "")
    with pytest.raises(ParameterError, match="txt input has no labels"):
        validate_images("batch", str(path), labelled_only=True)
    with pytest.raises(InputError, match="txt input has no labels"):
        next(ingestion.labelled_chunks(found))


def test_an_unrecognised_input_is_refused_listing_every_format(tmp_path, with_txt):
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.csv").write_text("1,2")
    for location, what in [(tmp_path / "notes.md", "not an input this reads"),
                           (tmp_path / "empty", "an empty directory"),
                           (tmp_path / "other", "a directory with no images")]:
        with pytest.raises(InputError) as excinfo:
            open_input(location)
        message = str(excinfo.value)
        assert message.startswith(f"{location}: {what}"), message
        for fmt in inputs.FORMATS:
            assert f"{fmt.name}: {fmt.accepts}" in message, (fmt.name, message)
    assert format_of(tmp_path / "notes.md") is None and format_of(tmp_path / "nowhere") is None


def test_formats_in_order_and_only_labelled_ones_for_ingest(tmp_path):
    assert [f.name for f in FORMATS] == ["idx", "png", "parquet", "npy"]
    assert [f.name for f in inputs.formats(labelled_only=True)] == ["idx", "png", "parquet"]
    np.save(tmp_path / "x.npy", make_digits(3, seed=1)[0])
    validate_images("input", str(tmp_path / "x.npy"))  # scoring reads it
    with pytest.raises(ParameterError) as excinfo:  # ingest refuses it before any work
        validate_images("batch", str(tmp_path / "x.npy"), labelled_only=True)
    message = str(excinfo.value)
    assert "npy input has no labels" in message
    assert all(f"{name}: " in message for name in ("idx", "png", "parquet"))
    with pytest.raises(InputError, match="npy input has no labels"):
        next(ingestion.labelled_chunks(open_input(tmp_path / "x.npy")))
    assert format_of("https://example.org/mnist/").name == "idx"  # recognised, not fetched


def test_is_url_is_the_one_http_check():
    assert is_url("http://host/x") and is_url("https://host/x")
    assert not is_url("file:///data") and not is_url("data/http") and not is_url(Path("x"))
    with pytest.raises(InputError, match="a URL needs a directory to download into"):
        open_input("https://example.org/mnist/")


def test_the_module_prints_the_table_for_the_docs():
    proc = subprocess.run([sys.executable, "-m", "mnist_autoencoder.data.inputs"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == formats_table()
    assert all(f"| `{f.name}` |" in proc.stdout for f in FORMATS)
