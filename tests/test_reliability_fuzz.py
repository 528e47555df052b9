"""Fuzzing every input users give: forecast CSVs, classify CSV / NPZ, translation TSVs, text corpora,
TOML / JSON run configs and `lstmkit train` options. Each gives a correct result or one clear error
(a ValueError / OSError with a one-line message; exit 2 and one line at the CLI), never a
traceback, and nothing leaves a half-written file.

OUTCOMES counts what each kind of input gave (benchmarks/fault_sweep.py prints it)."""
from __future__ import annotations

import collections
import contextlib
import functools
import io
import json
import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmkit.cli import main
from lstmkit.train import checkpoint as ckpt

OUTCOMES: collections.Counter = collections.Counter()
FUZZ = settings(max_examples=int(os.environ.get("LSTMKIT_FUZZ_EXAMPLES", "50")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = tempfile.mkdtemp(prefix="lstmkit-fuzz-")


def outcome(kind: str, fn):
    """Run fn; an error must be a ValueError / OSError with one non-empty line. Returns fn() or None."""
    try:
        result = fn()
    except (ValueError, OSError) as e:
        msg = str(e)
        assert msg.strip() and "\n" not in msg.strip(), f"{kind}: {type(e).__name__} message not one line: {msg!r}"
        assert "Traceback" not in msg
        OUTCOMES[(kind, f"one-line error ({type(e).__name__})")] += 1
        return None
    OUTCOMES[(kind, "accepted, result checked")] += 1
    return result


def path_of(name: str, data: bytes) -> str:
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def no_temp_files(folder: str) -> bool:
    return not os.path.isdir(folder) or not [f for f in os.listdir(folder) if ".tmp" in f]


cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**30, 10**30).map(str),
                  st.sampled_from(["", "NA", "nan", "x", "1e400", "-0", " 3 ", "1,5", "\"", "é"]),
                  st.text(max_size=6))
dates = st.one_of(st.dates().map(str), st.sampled_from(["", "2020-02-30", "not a date", "2020-01-01 12:00"]))


def mutate(rows: list[list[str]], edits) -> list[list[str]]:
    """Apply edits to a table of cells: (op, index, cell) with op in OPS."""
    rows = [list(r) for r in rows]
    for op, i, cell in edits:
        if not rows:
            break
        r = rows[i % len(rows)]
        if op == "set":
            r[i % len(r)] = cell
        elif op == "drop_row":
            rows.remove(r)
        elif op == "duplicate":
            rows.insert(i % len(rows), list(r))
        elif op == "swap":
            j = (i * 7) % len(rows)
            rows[i % len(rows)], rows[j] = rows[j], rows[i % len(rows)]
        elif op == "ragged":
            rows[i % len(rows)] = r[:-1] if i % 2 else r + [cell]
    return rows


OPS = st.sampled_from(["set", "set", "drop_row", "duplicate", "swap", "ragged"])
edits = st.lists(st.tuples(OPS, st.integers(0, 10**6), cells), max_size=3)


# --------------------------------------------------------------------------- forecast CSV
@FUZZ
@given(n=st.integers(1, 40), scale=st.sampled_from([1.0, 1e-30, 1e30, -5.0]), edits=edits, dated=st.booleans(),
       fill=st.sampled_from(["error", "ffill", "interpolate", "drop"]), covariate=st.booleans())
def test_forecast_csv(n, scale, edits, dated, fill, covariate):
    from lstmkit.apps.forecast.data import read_series

    base = [[f"{2000 + k // 12}-{k % 12 + 1:02d}-01", repr(scale * (10 + math.sin(k))), str(k % 5)] for k in range(n)]
    rows = mutate(base, edits)
    text = "date,value,temp\n" + "".join(",".join(r) + "\n" for r in rows)
    path = path_of("series.csv", text.encode("utf-8"))
    s = outcome("forecast CSV", lambda: read_series(path, "value", date="date" if dated else None,
                                                     covariates=("temp",) if covariate else (), fill=fill))
    if s is not None:
        filled = dated and fill in ("ffill", "interpolate")  # missing dates are filled in
        assert 0 < len(s) and (filled or len(s) <= len(rows)) and np.isfinite(s.y).all()
        if dated and not edits:
            assert len(s) == n and s.season == 12


# --------------------------------------------------------------------------- classify CSV / NPZ
@FUZZ
@given(n=st.integers(1, 20), edits=edits, labelled=st.booleans(), timed=st.booleans())
def test_classify_csv(n, edits, labelled, timed):
    from lstmkit.apps.classify.data import load_data

    header = ["id"] + (["label"] if labelled else []) + (["time"] if timed else []) + ["f1", "f2"]
    base = [[f"s{k % 4}"] + (["cat" if k % 4 < 2 else "dog"] if labelled else []) + ([str(n - k)] if timed else [])
            + [str(k * 0.5), str(-k)] for k in range(n)]
    rows = mutate(base, edits)
    path = path_of("seqs.csv", "\n".join(",".join(r) for r in [header] + rows).encode("utf-8"))
    d = outcome("classify CSV", lambda: load_data(path, require_labels=labelled))
    if d is not None:
        check_sequences(d)
        if not edits:
            assert d.x.shape[0] == min(n, 4) and (d.y is not None) == labelled


def check_sequences(d):
    N, T, F = d.x.shape
    assert N >= 1 and T >= 1 and F >= 1 and np.isfinite(d.x).all()
    assert d.lengths.shape == (N,) and (d.lengths >= 1).all() and (d.lengths <= T).all()
    if d.y is not None:
        assert d.y.shape == (N,) and (d.y >= 0).all() and (d.y < len(d.classes)).all()


odd_arrays = st.one_of(
    st.builds(lambda shape, fill: np.full(shape, fill), st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple),
              st.sampled_from([0.5, np.nan, np.inf, 3, -1, 1e300])),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=5).map(np.array),
    st.lists(st.floats(allow_nan=True), max_size=5).map(lambda v: np.array(v, dtype=np.float64)),
    st.just(np.array([1 + 2j, 3])), st.just(np.array([True, False])))


@FUZZ
@given(n=st.integers(1, 6), t=st.integers(1, 5), f=st.integers(1, 3), labels=st.sampled_from(["int", "str", "float"]),
       replace=st.dictionaries(st.sampled_from(["x", "lengths", "y", "labels", "other"]), st.one_of(st.none(), odd_arrays),
                               max_size=2),
       garbage=st.one_of(st.none(), st.binary(max_size=64)))
def test_classify_npz(n, t, f, labels, replace, garbage):
    from lstmkit.apps.classify.data import load_data

    rng = np.random.default_rng(n * 100 + t * 10 + f)
    arrays = {"x": rng.normal(size=(n, t, f)), "lengths": rng.integers(1, t + 1, size=n),
              "y": {"int": np.arange(n) % 3, "str": np.array(["a", "b"] * n)[:n], "float": np.arange(n) % 2 * 1.0}[labels]}
    for k, v in replace.items():
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    if garbage is not None:
        path = path_of("seqs.npz", garbage)
    else:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path = path_of("seqs.npz", buf.getvalue())
    d = outcome("classify NPZ", lambda: load_data(path, require_labels=False))
    if d is not None:
        check_sequences(d)
        if not replace and garbage is None:
            assert d.x.shape == (n, t, f) and (d.lengths == arrays["lengths"]).all()


# --------------------------------------------------------------------------- translation TSV, text corpora
lines = st.one_of(st.text(max_size=20), st.sampled_from(["a\tb", "\tb", "a\t", "a\tb\tc", "no tab", "  \t  ", ""]))


@FUZZ
@given(n=st.integers(0, 10), odd=st.lists(st.tuples(st.integers(0, 100), lines), max_size=3),
       binary=st.one_of(st.none(), st.binary(min_size=1, max_size=40)))
def test_translation_tsv(n, odd, binary):
    from lstmkit.apps.translate.data import read_tsv

    rows = [f"source {k}\tcible {k}" for k in range(n)]
    for i, line in odd:
        rows.insert(i % (len(rows) + 1), line)
    data = binary if binary is not None else "\n".join(rows).encode("utf-8", "surrogatepass")
    path = path_of("pairs.tsv", data)
    pairs = outcome("translation TSV", lambda: read_tsv(path))
    if pairs is not None:
        assert pairs and all(s and t and "\t" not in s + t for s, t in pairs)


@FUZZ
@given(data=st.one_of(st.binary(max_size=60), st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.sampled_from([b"", b"x", b"\xef\xbb\xbf", b"   \n", b"\xff\xfe", b"a\x00b"])))
def test_text_corpus(data):
    from lstmkit.apps.text.data import load_text

    path = path_of("corpus.txt", data)
    text = outcome("text corpus", lambda: load_text(path))
    if text is not None:
        assert text.strip() and "\x00" not in text


# --------------------------------------------------------------------------- run configs
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["echo", "adding", "cosine", "lstm", "nope"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
keys = st.sampled_from(["task", "run_dir", "hidden_size", "window", "lag", "model", "format", "train",
                        "unknown", "train.steps", "data"])
train_keys = st.sampled_from(["steps", "lr", "schedule", "batch_size", "tbptt", "mode", "bogus", "seed"])


@FUZZ
@given(top=st.dictionaries(keys, values, max_size=2), train=st.dictionaries(train_keys, values, max_size=2),
       as_json=st.booleans(), raw=st.one_of(st.none(), st.none(), st.none(), st.text(max_size=40)))
def test_run_config_file(top, train, as_json, raw):
    from lstmkit.train.config import load_file, parse_run_config

    data = {"task": "echo", "hidden_size": 3, "lag": 2, "train": {"steps": 2, "lr": 0.01}}
    data.update(top)
    if isinstance(data.get("train"), dict):
        data["train"] = dict(data["train"], **train)
    if raw is not None:
        text = raw
    elif as_json:
        text = json.dumps(data, allow_nan=True)
    else:
        text = to_toml(data)
    path = path_of("run.json" if as_json else "run.toml", text.encode("utf-8", "surrogatepass"))
    cfg = outcome("run config (TOML/JSON)", lambda: parse_run_config(load_file(path)))
    if cfg is not None:
        assert cfg.task in ("echo", "adding") and cfg.train.steps >= 1 and cfg.train.batch_size >= 1
        if not top and not train and raw is None:
            assert cfg.options.hidden_size == 3 and cfg.train.lr == 0.01


def to_toml(data) -> str:
    """A small TOML writer (plain values and one level of tables); what it cannot write becomes a string."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)) and not (isinstance(v, float) and not math.isfinite(v)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(str(v))
    plain = [f"{json.dumps(k)} = {val(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(k)}]\n" + "\n".join(f"{json.dumps(a)} = {val(b)}" for a, b in v.items()
                                                   if not isinstance(b, dict))
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(plain + tables) + "\n"


# --------------------------------------------------------------------------- `lstmkit train` options
TINY = ["--task", "echo", "--hidden_size", "3", "--window", "4", "--lag", "1", "--eval_docs", "2",
        "--backend", "reference", "--train.steps", "2", "--train.batch_size", "2", "--train.plot", "false",
        "--train.progress", "off", "--train.threads", "1"]
option = st.sampled_from(["--train.lr", "--train.schedule", "--train.tbptt", "--train.batch_size", "--lag",
                          "--window", "--model", "--train.eval_every", "--train.mode", "--train.warmup_steps",
                          "--dropout_p", "--nope", "--train.nope", "--train", "-x", "--train.steps"])
option_value = st.one_of(st.sampled_from(["0", "-1", "1", "2", "1e-3", "nan", "inf", "true", "rnn", "lstm",
                                          "cosine", "plateau", "max", "", "none", "3,4", "1e309", "0x10"]),
                         st.text(max_size=5))


@FUZZ
@given(extra=st.lists(st.tuples(option, option_value), max_size=3), dangling=st.booleans())
def test_train_options(extra, dangling):
    run = tempfile.mkdtemp(prefix="run-", dir=WORK)
    argv = ["train", *TINY, "--run_dir", run]
    for k, v in extra:
        argv += [k, v]
    if dangling:
        argv.append("--train.lr")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    text = err.getvalue().strip()
    assert rc in (0, 2), (argv, rc, text)
    assert no_temp_files(run), argv
    if rc == 2:
        assert len(text.splitlines()) == 1 and text.startswith("lstmkit train: error: ") and "Traceback" not in text
        OUTCOMES[("`lstmkit train` options", "exit 2, one-line error")] += 1
    else:
        from lstmkit.train import load_run

        cfg, _task, _model = load_run(run)  # a complete, loadable run folder
        assert ckpt.read_state(run)["step"] == cfg.train.steps
        OUTCOMES[("`lstmkit train` options", "trained, folder loads")] += 1


@pytest.fixture(autouse=True, scope="module")
def _clean():
    yield
    import shutil

    shutil.rmtree(WORK, ignore_errors=True)


# --------------------------------------------------------------------------- every command's options
COMMAND_OPTIONS = {
    "generate": ("text", ["--prime", "--length", "--temperature", "--top-k", "--top-p", "--seed", "--threads"]),
    "inspect": ("text", ["--text", "--layer", "--unit", "--quantity", "--bits", "--pattern", "--direction",
                         "--max-chars", "--window", "--member", "--threads"]),
    "forecast": ("forecast", ["--horizon", "--holdout", "--last", "--stride", "--data", "--backtest", "--conformal"]),
    "export": ("echo", ["--module", "--method", "--opset", "--initial-state", "--lengths", "--core-only"]),
}
FLAGS = {"--backtest", "--conformal", "--initial-state", "--lengths", "--core-only"}
command_value = st.one_of(st.sampled_from(["-1", "0", "1", "2", "3", "12", "nan", "inf", "x", "", "[", "(a", "a|b",
                                           "1e9", "-0.5", "0.5", "core", "scan", "native", "c", "reverse", "16",
                                           "8", "2:40", "airline", "missing.csv"]),
                          st.text(max_size=4))


@functools.lru_cache(maxsize=None)
def command_runs() -> dict[str, str]:
    """A tiny text, forecast and echo run, trained once."""
    import torch

    torch.set_num_threads(1)
    runs = {"text": os.path.join(WORK, "cmd-text"), "forecast": os.path.join(WORK, "cmd-forecast"),
            "echo": os.path.join(WORK, "cmd-echo")}
    corpus = path_of("cmd-corpus.txt", ("To be, or not to be: that is the question.\n" * 6).encode())
    fast = ["--train.progress", "off", "--train.plot", "false", "--train.threads", "1", "--train.steps", "2"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "text", "--data", corpus, "--hidden_size", "6", "--embedding_size", "4", "--num_layers",
                     "2", "--seq_len", "8", "--train.batch_size", "2", "--run_dir", runs["text"], *fast]) == 0
        assert main(["train", "forecast", "--data", "airline", "--horizon", "3", "--lookback", "6", "--hidden_size",
                     "4", "--run_dir", runs["forecast"], *fast]) == 0
        assert main(["train", *TINY, "--run_dir", runs["echo"]]) == 0
    return runs


@FUZZ
@given(command=st.sampled_from(sorted(COMMAND_OPTIONS)), picks=st.lists(st.tuples(st.integers(0, 20), command_value),
                                                                          max_size=3))
def test_command_options(command, picks):
    kind, options = COMMAND_OPTIONS[command]
    run = command_runs()[kind]
    out = tempfile.mkdtemp(prefix="out-", dir=WORK)
    argv = [command, run] + {"export": ["--onnx", os.path.join(out, "m.onnx")],
                             "inspect": ["--out", os.path.join(out, "p.html")],
                             "forecast": ["--plot", os.path.join(out, "f.png")]}.get(command, [])
    if command == "inspect":
        argv += ["--text", "To be"]
    for i, value in picks:
        opt = options[i % len(options)]
        argv += [opt] if opt in FLAGS else [opt, value]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: a usage line, then "lstmkit <command>: error: ..."
            rc = e.code
            assert rc == 2 and err.getvalue().strip().splitlines()[-1].startswith(f"lstmkit {command}: error: ")
    text = err.getvalue().strip()
    assert rc in (0, 2), (argv, rc, text)
    assert no_temp_files(out) and no_temp_files(run), argv
    if rc == 2:
        assert "Traceback" not in text and text.splitlines()[-1].startswith(f"lstmkit {command}: error: "), text
        OUTCOMES[(f"`lstmkit {command}` options", "exit 2, one-line error")] += 1
    else:
        written = {"export": "m.onnx", "inspect": "p.html"}.get(command)
        assert written is None or os.path.getsize(os.path.join(out, written)) > 0, argv
        OUTCOMES[(f"`lstmkit {command}` options", "ran, outputs complete")] += 1
