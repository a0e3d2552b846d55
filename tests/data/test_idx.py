import gzip

import numpy as np
import pytest

from mnist_autoencoder.data.idx import (
    IdxFormatError,
    load_images_and_labels,
    parse_idx,
    read_idx_gz,
)
from tests.helpers import idx_bytes


def test_parse_round_trip():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00\x0d\x03" + bytes(12), "bad magic number"),  # float type code
    (b"\x01\x00\x08\x01" + bytes(4), "bad magic number"),
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated"),
])
def test_parse_rejects_bad_headers(data, message):
    with pytest.raises(IdxFormatError, match=message):
        parse_idx(data)


def test_parse_rejects_payload_of_wrong_length():
    data = idx_bytes(np.zeros((4, 2, 2), np.uint8))
    with pytest.raises(IdxFormatError, match=r"shape \(4, 2, 2\)"):
        parse_idx(data[:-1])


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8)))[:-20])
    with pytest.raises(IdxFormatError, match="not a complete gzip"):
        read_idx_gz(path)


def test_image_and_label_counts_must_agree(tmp_path):
    (tmp_path / "i.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8))))
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(IdxFormatError, match="5 images but .* 4 labels"):
        load_images_and_labels(tmp_path / "i.gz", tmp_path / "l.gz")
