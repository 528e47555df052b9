"""Labelled variable-length sequences: built-in data sets and the user's CSV / NPZ files.

Every loader returns a SequenceData: right-padded ``x`` (N, T, F) float32, ``lengths`` (N,)
in [1, T], class indices ``y`` (N,) (or None for unlabelled files) and the class names.

Built-in sets (``load_dataset(name, split)``, split "train" | "test"):
    japanese_vowels   270 / 370 sequences, 12 LPC cepstrum features, length 7-29, 9 speakers
                      (UCI; read through sktime: ``pip install 'lstmkit[classify]'``)
    digits            1,797 8x8 digits read row by row: 8 steps of 8 pixels (scikit-learn);
                      a fixed 75 / 25 % split (seed 0)
    fashion_mnist     60,000 / 10,000 28x28 images as 28 steps of 28 pixels, from the IDX files
                      of Debian's ``dataset-fashion-mnist`` (or $LSTMKIT_FASHION_MNIST_DIR)

User files (any path ending in .csv or .npz):
    CSV, one row per time step, a header naming the columns:
        id,label,f1,f2,...        ``id`` (or ``sequence_id``) groups rows into sequences, in
        a,cat,0.1,0.5             the order they first appear; ``label`` is optional for
        a,cat,0.2,0.4             prediction; an optional ``time`` column orders the steps
        b,dog,0.9,0.1             (else file order); every other column is a numeric feature.
    NPZ (numpy.savez): ``x`` (N, T, F) or (N, T) right-padded, optional ``lengths`` (N,)
        (default: all T), optional ``y`` (N,) labels (ints or strings).

Sources and licenses (nothing is shipped with lstmkit; each is read where its package installs it):
    JapaneseVowels  Kudo, Toyama & Shimbo (1999), UCI Machine Learning Repository, CC BY 4.0;
                    the copy bundled in sktime (BSD-3) from the UCR/UEA archive.
    digits          UCI "Optical Recognition of Handwritten Digits" test part, CC BY 4.0, as
                    bundled in scikit-learn (BSD-3).
    Fashion-MNIST   Zalando Research, MIT (Expat) license; Debian package dataset-fashion-mnist.

Malformed files raise DataError (a ValueError) with one line naming the file and the problem.
"""
from __future__ import annotations

import csv
import gzip
import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import DataError

BUILTIN = ("japanese_vowels", "digits", "fashion_mnist")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]


@dataclass
class SequenceData:
    """Right-padded labelled sequences.

    Shapes: x (N, T, F) float32 with zeros past each length; lengths (N,) int64 in [1, T];
    y (N,) int64 indices into classes, or None when the file has no labels.
    """

    x: np.ndarray
    lengths: np.ndarray
    y: Optional[np.ndarray]
    classes: list[str]
    name: str = ""

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_features(self) -> int:
        return self.x.shape[2]

    def subset(self, idx: np.ndarray) -> "SequenceData":
        return SequenceData(self.x[idx], self.lengths[idx], None if self.y is None else self.y[idx],
                            self.classes, self.name)

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (F,) of each feature over the valid steps (not the padding)."""
        mask = np.arange(self.x.shape[1])[None, :] < self.lengths[:, None]  # (N, T)
        steps = self.x[mask].astype(np.float64)  # (sum of lengths, F)
        mean, std = steps.mean(0), steps.std(0)
        return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def pad(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (T_i, F) arrays → right-padded x (N, max T_i, F) float32 and lengths (N,)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    x = np.zeros((len(seqs), int(lengths.max()), seqs[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return x, lengths


def _sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def encode_labels(raw: Sequence, classes: Optional[list[str]] = None, where: str = "") -> tuple[np.ndarray, list[str]]:
    """Labels (any values) → class indices; classes default to the sorted distinct labels
    (numerically when they are all numbers). A label not in given classes is a DataError."""
    names = [str(v) for v in raw]
    if classes is None:
        classes = sorted(set(names), key=_sort_key)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - set(index), key=_sort_key)
    if unknown:
        raise DataError(f"{where}label {unknown[0]!r} is not one of the model's classes {classes}")
    return np.array([index[n] for n in names], dtype=np.int64), list(classes)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of range(n): (rest, held out ``fraction`` of n)."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


# --------------------------------------------------------------------------- built-in sets


def japanese_vowels(split: str) -> SequenceData:
    """UCI Japanese Vowels (Kudo, Toyama & Shimbo 1999) through sktime's bundled copy."""
    try:
        from sktime.datasets import load_japanese_vowels
    except ImportError:
        raise DataError("japanese_vowels needs sktime: pip install 'lstmkit[classify]' (or pip install sktime)") from None
    X, y = load_japanese_vowels(split=split)  # X: nested DataFrame, one pd.Series per cell
    seqs = [np.stack([np.asarray(X.iloc[i, j], dtype=np.float32) for j in range(X.shape[1])], axis=1)
            for i in range(len(X))]  # each (T_i, 12)
    x, lengths = pad(seqs)
    labels, classes = encode_labels(y, [str(k) for k in range(1, 10)], "japanese_vowels: ")
    return SequenceData(x, lengths, labels, classes, "japanese_vowels")


def digits(split: str) -> SequenceData:
    """scikit-learn's 8x8 digits, each image read top to bottom: 8 steps of 8 pixels in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("digits needs scikit-learn: pip install 'lstmkit[classify]' (or pip install scikit-learn)") from None
    d = load_digits()
    x = (d.data.reshape(-1, 8, 8) / 16.0).astype(np.float32)  # (1797, T=8, F=8)
    train, test = split_indices(len(x), 0.25, seed=0)
    idx = train if split == "train" else test
    return SequenceData(x[idx], np.full(len(idx), 8, dtype=np.int64), d.target[idx].astype(np.int64),
                        [str(k) for k in range(10)], "digits")


def read_idx(path: str) -> np.ndarray:
    """An IDX file (the MNIST format; gzip'd or not) as a uint8 array of its stated shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()!r}, expected 000008xx)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(dims):
        raise DataError(f"{path}: header says shape {dims} ({math.prod(dims)} bytes), file has {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find(folder: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise DataError(f"fashion_mnist: {stem}(.gz) not found in {folder}; install the Debian package "
                    "dataset-fashion-mnist or set LSTMKIT_FASHION_MNIST_DIR")


def fashion_mnist(split: str) -> SequenceData:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) rows: 28 steps of 28 pixels in [0, 1]."""
    folder = os.environ.get("LSTMKIT_FASHION_MNIST_DIR", FASHION_MNIST_DIR)
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))  # (N, 28, 28)
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))  # (N,)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise DataError(f"fashion_mnist: images {images.shape} and labels {labels.shape} do not match")
    x = images.astype(np.float32) / 255.0
    return SequenceData(x, np.full(len(x), x.shape[1], dtype=np.int64), labels.astype(np.int64),
                        list(FASHION_CLASSES), "fashion_mnist")


_LOADERS = {"japanese_vowels": japanese_vowels, "digits": digits, "fashion_mnist": fashion_mnist}


# --------------------------------------------------------------------------- user files


def load_csv(path: str, classes: Optional[list[str]] = None, require_labels: bool = True) -> SequenceData:
    """Long-format CSV (see the module docstring) → SequenceData."""
    where = f"{path}: "
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DataError(f"{where}empty file; expected a header such as id,label,f1,f2")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    id_col = next((lower.index(n) for n in ("id", "sequence_id") if n in lower), None)
    if id_col is None:
        raise DataError(f"{where}no 'id' column in the header {header}; expected e.g. id,label,f1,f2")
    label_col = lower.index("label") if "label" in lower else None
    time_col = lower.index("time") if "time" in lower else None
    feat_cols = [k for k in range(len(header)) if k not in (id_col, label_col, time_col)]
    if not feat_cols:
        raise DataError(f"{where}no feature columns besides id/label/time in the header {header}")
    if label_col is None and require_labels:
        raise DataError(f"{where}no 'label' column in the header {header} (training needs labels)")
    if len(rows) < 2:
        raise DataError(f"{where}a header but no data rows")

    groups: dict[str, list[tuple[float, list[float]]]] = {}
    seq_label: dict[str, str] = {}
    for n, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DataError(f"{where}line {n}: {len(r)} fields, the header has {len(header)}")
        sid = r[id_col].strip()
        try:
            feats = [float(r[k]) for k in feat_cols]
            t = float(r[time_col]) if time_col is not None else float(len(groups.get(sid, ())))
        except ValueError:
            bad = next(k for k in feat_cols + ([time_col] if time_col is not None else [])
                       if not _is_float(r[k]))
            raise DataError(f"{where}line {n}: column {header[bad]!r} is {r[bad]!r}, expected a number") from None
        if not all(math.isfinite(v) for v in feats):
            raise DataError(f"{where}line {n}: non-finite feature value (nan or inf)")
        if any(abs(v) > FLOAT32_MAX for v in feats):
            raise DataError(f"{where}line {n}: a feature value beyond float32's range (±{FLOAT32_MAX:.4g})")
        if label_col is not None:
            lab = r[label_col].strip()
            if lab == "":
                raise DataError(f"{where}line {n}: empty label")
            if seq_label.setdefault(sid, lab) != lab:
                raise DataError(f"{where}line {n}: sequence {sid!r} has label {lab!r} here but "
                                f"{seq_label[sid]!r} earlier; a sequence has one label")
        groups.setdefault(sid, []).append((t, feats))

    seqs = []
    for sid, steps in groups.items():
        steps.sort(key=lambda s: s[0])  # stable: file order breaks ties
        seqs.append(np.array([s[1] for s in steps], dtype=np.float32))
    x, lengths = pad(seqs)
    y = None
    if label_col is not None:
        y, classes = encode_labels([seq_label[s] for s in groups], classes, where)
    return SequenceData(x, lengths, y, classes or [], os.path.basename(path))


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_npz(path: str, classes: Optional[list[str]] = None, require_labels: bool = True) -> SequenceData:
    """NPZ with ``x`` (N, T, F) or (N, T), optional ``lengths`` (N,), ``y`` (N,) → SequenceData."""
    where = f"{path}: "
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays, or not a numpy file at all
        raise DataError(f"{where}cannot read as .npz ({str(e).splitlines()[0]}); save plain numeric "
                        "or string arrays with numpy.savez") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{where}cannot read as .npz ({e})") from None
    if not hasattr(z, "files"):
        raise DataError(f"{where}a single .npy array, expected an .npz archive with keys x, lengths, y")
    try:
        keys = set(z.files)
        xk = next((k for k in ("x", "sequences", "X") if k in keys), None)
        if xk is None:
            raise DataError(f"{where}no 'x' array (keys: {sorted(keys)}); expected x (N, T, F), lengths (N,), y (N,)")
        try:
            x = np.asarray(z[xk])
        except ValueError as e:
            raise DataError(f"{where}cannot read '{xk}' ({str(e).splitlines()[0]})") from None
        if x.ndim == 2:
            x = x[:, :, None]  # (N, T) → one feature
        if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
            raise DataError(f"{where}'{xk}' has shape {x.shape}, expected (N, T, F) or (N, T) with N, T, F >= 1")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"{where}'{xk}' has dtype {x.dtype}, expected real numbers")
        N, T = x.shape[:2]
        if "lengths" in keys:
            lengths = np.asarray(z["lengths"])
            if lengths.shape != (N,):
                raise DataError(f"{where}'lengths' has shape {lengths.shape}, expected ({N},) to match '{xk}'")
            if not np.issubdtype(lengths.dtype, np.integer):
                if not (np.issubdtype(lengths.dtype, np.floating) and np.all(lengths == np.round(lengths))):
                    raise DataError(f"{where}'lengths' must be whole numbers, got dtype {lengths.dtype}")
            lengths = lengths.astype(np.int64)
            bad = np.flatnonzero((lengths < 1) | (lengths > T))
            if len(bad):
                raise DataError(f"{where}lengths[{bad[0]}] = {lengths[bad[0]]}, expected 1..{T} (T of '{xk}')")
        else:
            lengths = np.full(N, T, dtype=np.int64)
        x = x.astype(np.float32)
        valid = np.arange(T)[None, :] < lengths[:, None]
        if not np.isfinite(x[valid]).all():
            n = int(np.flatnonzero(~np.isfinite(x).all(2) & valid)[0] // T)
            raise DataError(f"{where}sequence {n} has non-finite values (nan or inf) within its length")
        x[~valid] = 0.0
        yk = next((k for k in ("y", "labels") if k in keys), None)
        y = None
        if yk is not None:
            raw = np.asarray(z[yk])
            if raw.shape != (N,):
                raise DataError(f"{where}'{yk}' has shape {raw.shape}, expected ({N},) to match '{xk}'")
            if np.issubdtype(raw.dtype, np.floating) and not np.all(raw == np.round(raw)):
                raise DataError(f"{where}'{yk}' holds fractional numbers; labels must be integers or strings")
            if np.issubdtype(raw.dtype, np.floating):
                raw = raw.astype(np.int64)
            y, classes = encode_labels(raw.tolist(), classes, where)
        elif require_labels:
            raise DataError(f"{where}no 'y' (labels) array; training needs labels (keys: {sorted(keys)})")
    finally:
        z.close()
    return SequenceData(x, lengths, y, classes or [], os.path.basename(path))


def load_data(spec: str, split: str = "train", classes: Optional[list[str]] = None,
              require_labels: bool = True) -> SequenceData:
    """A built-in set by name (its ``split``), or a user's .csv / .npz file (split ignored).

    classes: map a file's labels onto these (a model's classes) instead of its own sorted set.
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    key = spec.strip().lower().replace("-", "_")
    if key in _LOADERS:
        return _LOADERS[key](split)
    low = spec.lower()
    if low.endswith(".csv") or low.endswith(".npz"):
        if not os.path.isfile(spec):
            raise DataError(f"data file not found: {spec}")
        loader = load_csv if low.endswith(".csv") else load_npz
        return loader(spec, classes=classes, require_labels=require_labels)
    raise DataError(f"unknown data {spec!r}: expected one of {', '.join(BUILTIN)} or a path ending in .csv or .npz")
