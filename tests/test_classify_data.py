"""Sequence-classification data: CSV / NPZ / IDX readers, and one-line errors for malformed files."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from lstmkit.apps.classify.data import DataError, encode_labels, load_data, read_idx


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_csv_groups_rows_orders_by_time_and_pads(tmp_path):
    path = write(tmp_path, "d.csv", "id,time,label,a,b\n"
                 "s1,1,dog,0.5,1\n"
                 "s2,0,cat,9,9\n"
                 "s1,0,dog,0.1,2\n"
                 "s1,2,dog,0.7,3\n")
    d = load_data(path)
    assert d.classes == ["cat", "dog"]
    assert d.lengths.tolist() == [3, 1]  # s1 first: the order sequences first appear
    assert d.y.tolist() == [1, 0]
    np.testing.assert_allclose(d.x[0], [[0.1, 2], [0.5, 1], [0.7, 3]])  # sorted by the time column
    np.testing.assert_allclose(d.x[1], [[9, 9], [0, 0], [0, 0]])  # zero padding


def test_csv_without_labels_loads_for_prediction(tmp_path):
    path = write(tmp_path, "u.csv", "id,f\nx,1\nx,2\ny,3\n")
    d = load_data(path, require_labels=False)
    assert d.y is None and d.lengths.tolist() == [2, 1]


def test_npz_roundtrip_with_string_labels_and_model_classes(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    x[1, 2:] = np.nan  # past the length: ignored and zeroed
    path = str(tmp_path / "d.npz")
    np.savez(path, x=x, lengths=np.array([4, 2, 3]), y=np.array(["b", "a", "b"]))
    d = load_data(path)
    assert d.classes == ["a", "b"] and d.y.tolist() == [1, 0, 1]
    assert np.isfinite(d.x).all() and (d.x[1, 2:] == 0).all()
    d2 = load_data(path, classes=["b", "a", "c"])  # a model's classes keep their indices
    assert d2.y.tolist() == [0, 1, 0]


def test_numeric_labels_sort_numerically():
    y, classes = encode_labels([10, 2, 1, 2])
    assert classes == ["1", "2", "10"] and y.tolist() == [2, 1, 0, 1]


BAD_CSV = [
    ("", "empty file"),
    ("seq,label,a\n1,x,0.5\n", "no 'id' column"),
    ("id,label\n1,x\n", "no feature columns"),
    ("id,label,a\n", "a header but no data rows"),
    ("id,label,a\n1,x,0.5\n1,x\n", "line 3: 2 fields, the header has 3"),
    ("id,label,a\n1,x,0.5\n1,x,abc\n", "line 3: column 'a' is 'abc', expected a number"),
    ("id,label,a\n1,x,nan\n", "line 2: non-finite"),
    ("id,label,a\n1,x,1\n1,y,2\n", "sequence '1' has label 'y' here but 'x' earlier"),
    ("id,a\n1,0.5\n", "no 'label' column"),
    ("id,label,a\n1,,0.5\n", "line 2: empty label"),
]


@pytest.mark.parametrize("text,message", BAD_CSV, ids=[m for _, m in BAD_CSV])
def test_malformed_csv_gives_one_line_error_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError) as e:
        load_data(path)
    msg = str(e.value)
    assert message in msg and path in msg and "\n" not in msg


def _npz(tmp_path, **arrays):
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    return path


X = np.zeros((2, 3, 1), dtype=np.float32)
BAD_NPZ = [
    (dict(y=np.array([0, 1])), "no 'x' array"),
    (dict(x=np.zeros(3), y=np.array([0, 1])), "has shape (3,), expected (N, T, F)"),
    (dict(x=X, lengths=np.array([1, 2, 3]), y=np.array([0, 1])), "'lengths' has shape (3,), expected (2,)"),
    (dict(x=X, lengths=np.array([0, 2]), y=np.array([0, 1])), "lengths[0] = 0, expected 1..3"),
    (dict(x=X, lengths=np.array([4, 2]), y=np.array([0, 1])), "lengths[0] = 4, expected 1..3"),
    (dict(x=X, lengths=np.array([1.5, 2]), y=np.array([0, 1])), "'lengths' must be whole numbers"),
    (dict(x=X, y=np.array([0, 1, 1])), "'y' has shape (3,), expected (2,)"),
    (dict(x=X, y=np.array([0.5, 1])), "labels must be integers or strings"),
    (dict(x=X), "no 'y' (labels) array"),
    (dict(x=np.array([["a", "b"]]), y=np.array([0])), "expected real numbers"),
    (dict(x=np.where(np.arange(3)[None, :, None] == 1, np.inf, X), y=np.array([0, 1])), "non-finite"),
]


@pytest.mark.parametrize("arrays,message", BAD_NPZ, ids=[m for _, m in BAD_NPZ])
def test_malformed_npz_gives_one_line_error(tmp_path, arrays, message):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DataError) as e:
        load_data(path)
    msg = str(e.value)
    assert message in msg and "\n" not in msg, msg


def test_npz_with_object_arrays_or_garbage_bytes_is_refused(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((3, 1)), np.zeros((2, 1))
    path = _npz(tmp_path, x=ragged, y=np.array([0, 1]))
    with pytest.raises(DataError, match="cannot read"):
        load_data(path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="cannot read as .npz"):
        load_data(str(junk))


def test_unknown_spec_and_missing_file():
    with pytest.raises(DataError, match="unknown data 'mnist'"):
        load_data("mnist")
    with pytest.raises(DataError, match="data file not found"):
        load_data("/nonexistent/file.csv")


def test_read_idx_gzip_and_truncated(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    good = tmp_path / "img-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(header + images.tobytes()))
    np.testing.assert_array_equal(read_idx(str(good)), images)
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(header + images.tobytes()[:-1])
    with pytest.raises(DataError, match=r"header says shape \[2, 3, 4\] \(24 bytes\), file has 23"):
        read_idx(str(short))


def test_fashion_mnist_folder_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMKIT_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_data("fashion_mnist")
