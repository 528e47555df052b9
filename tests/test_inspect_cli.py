"""``lstmkit inspect``: the explorer page of real (tiny, quickly trained) text and forecast runs,
its static figures, and the live server."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from lstmkit.cli import main
from lstmkit.viz.explorer import atomic_write_text, dequantize

TEXT = 'ab "cd" ef\ngh "a b" c\n' * 30
PAGE_DATA = re.compile(r'<script type="application/json" id="lk-data">(.*?)</script>', re.S)


def train(args: list[str]) -> None:
    rc = main(["train", *args, "--train.progress", "off", "--train.plot", "false", "--train.threads", "1"])
    assert rc == 0


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    data = d / "corpus.txt"
    data.write_text(TEXT * 4, encoding="utf-8")
    run = str(d / "run")
    train(["text", "--data", str(data), "--run_dir", run, "--hidden_size", "12", "--embedding_size", "6",
           "--num_layers", "2", "--seq_len", "16", "--train.batch_size", "4",
           "--train.steps", "8", "--train.eval_every", "8"])
    return run


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("forecast") / "run")
    train(["forecast", "--data", "airline", "--horizon", "6", "--lookback", "12", "--hidden_size", "6",
           "--log", "true", "--seasonal_diff", "12", "--run_dir", run, "--train.steps", "3", "--train.eval_every", "3"])
    return run


def page_data(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        page = f.read()
    return json.loads(PAGE_DATA.search(page).group(1))


def test_text_page_is_self_contained_and_holds_every_gate(text_run, tmp_path, capsys):
    out = str(tmp_path / "page.html")
    rc = main(["inspect", text_run, "--text", TEXT, "--pattern", '"[^"]*"', "--layer", "2", "--out", out])
    assert rc == 0
    printed = capsys.readouterr().out
    assert out in printed and "best units of layer 2" in printed
    page = open(out, encoding="utf-8").read()
    # offline: nothing fetched at view time (no CDN script, stylesheet, font or image)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert page.count("<script") == 2  # the data and the inline script, nothing with src=
    d = page_data(out)
    assert d["kind"] == "text" and d["text"] == TEXT and d["steps"] == len(TEXT)
    assert d["model"]["layers"] == 2 and d["model"]["hidden"] == 12
    assert d["defaults"]["layer"] == 1 and d["defaults"]["pattern"] == '"[^"]*"'
    # the values in the page are the LSTM's, to within half a quantization step
    from lstmkit.apps.text.task import TextTask
    from lstmkit.cli import load_run_of
    from lstmkit.apps.text.task import text_states

    _, task, model = load_run_of(text_run, TextTask, "text")
    states = text_states(model, task.vocab, TEXT)
    for q in "ifgoch":
        for layer in range(2):
            entry = d["arrays"][q][layer][0]
            ref = states.get(q, layer)
            step = (entry["hi"] - entry["lo"]) / 255
            assert np.abs(dequantize(entry, ref.shape) - ref).max() <= step / 2 + 1e-6
    assert len(d["span"][1][0]) == 12 and all(1 <= v <= 10 * len(TEXT) for v in d["span"][1][0])
    assert not [f for f in os.listdir(tmp_path) if f != "page.html"]  # no temporary file left behind


def test_default_page_goes_into_the_run_folder_and_figures_are_written(text_run, tmp_path, capsys):
    figs = tmp_path / "figs"
    (tmp_path / "in.txt").write_text(TEXT[:200], encoding="utf-8")
    assert main(["inspect", text_run, "--text-file", str(tmp_path / "in.txt"), "--pattern", "[aeiou]",
                 "--figures", str(figs)]) == 0
    assert page_data(os.path.join(text_run, "explorer.html"))["text"] == TEXT[:200]
    assert os.path.isfile(os.path.join(text_run, "explorer.html"))
    names = sorted(os.listdir(figs))
    assert names == ["gate_strip.png", "memory_span.png", "ranking.png", "text_heatmap.png", "trajectories.png"]
    for n in names:
        with open(figs / n, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--text", "xyz"], "character 'x' is not in the model's vocabulary"),
    (["--text", "abc", "--pattern", "(a"], r"pattern '\(a' is not a valid regular expression"),
    (["--text", "abc", "--pattern", "z"], "the pattern matches no character of the input"),
    (["--text", "abc", "--layer", "3"], r"--layer must be in \[1, 2\] \(1-based; the model has 2\), got 3"),
    (["--text", "abc", "--unit", "12"], r"--unit must be in \[0, 11\] \(0-based\), got 12"),
    (["--text", "abc", "--direction", "reverse"], "--direction reverse needs a bidirectional LSTM"),
    (["--text", "abc", "--window", "1:5"], "--window is for forecast runs"),
    ([], 'a text run needs its input: --text "..." or --text-file FILE'),
    (["--text-file", "/nonexistent/in.txt"], "/nonexistent/in.txt: no such file"),
    (["--text", "abcabc", "--max-chars", "5"], "the text has 6 characters; the page holds at most 5"),
])
def test_text_run_errors_are_one_line(text_run, tmp_path, capsys, args, message):
    assert main(["inspect", text_run, "--out", str(tmp_path / "p.html"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lstmkit inspect: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not os.path.exists(tmp_path / "p.html")


def test_missing_run_and_text_file_errors(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope"), "--text", "a"]) == 2
    assert "no run folder at" in capsys.readouterr().err


def test_forecast_page_aligns_gates_with_the_series(forecast_run, tmp_path):
    out = str(tmp_path / "f.html")
    assert main(["inspect", forecast_run, "--window", "24:60", "--out", out, "--figures", str(tmp_path / "figs")]) == 0
    d = page_data(out)
    assert d["kind"] == "series" and d["steps"] == 36 and "text" not in d
    assert d["labels"][0] == "1951-01-01" and d["labels"][-1] == "1953-12-01"
    from lstmkit.apps.forecast import load_dataset

    np.testing.assert_allclose(d["series"], load_dataset("airline").y[24:60], rtol=1e-6)
    assert "gate_strip.png" in os.listdir(tmp_path / "figs") and "text_heatmap.png" not in os.listdir(tmp_path / "figs")
    # without --window: every row the preprocessing leaves (seasonal differencing uses the first 12)
    assert main(["inspect", forecast_run, "--out", out]) == 0
    assert page_data(out)["steps"] == 144 - 12


@pytest.mark.parametrize("args, message", [
    (["--window", "5:60"], "--window must start at row 12 or later"),
    (["--window", "60:50"], r"--window must satisfy 0 <= START < END <= 144"),
    (["--window", "a:b"], "--window must be START:END"),
    (["--member", "2"], r"--member must be in \[1, 1\]"),
    (["--text", "abc"], "--text, --text-file and --pattern are for text runs"),
])
def test_forecast_run_errors(forecast_run, tmp_path, capsys, args, message):
    assert main(["inspect", forecast_run, "--out", str(tmp_path / "p.html"), *args]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_atomic_write_keeps_the_old_page_when_writing_fails(tmp_path, monkeypatch):
    path = str(tmp_path / "page.html")
    atomic_write_text(path, "old page")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, "new page, half written")
    assert open(path).read() == "old page"
    assert os.listdir(tmp_path) == ["page.html"]


def test_live_server_answers_new_text_and_refuses_bad_input(text_run):
    from lstmkit.apps.text.task import TextTask
    from lstmkit.cli import load_run_of
    from lstmkit.apps.text.task import text_states
    from lstmkit.viz.explorer import build_payload, render_page
    from lstmkit.viz.server import make_server

    _, task, model = load_run_of(text_run, TextTask, "text")
    states = text_states(model, task.vocab, TEXT[:50])
    page = render_page(build_payload(states, text=TEXT[:50], live=True))
    server = make_server(page, lambda req: build_payload(text_states(model, task.vocab, req["text"]),
                                                         text=req["text"], live=True))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = "http://%s:%d" % server.server_address[:2]
    try:
        assert server.server_address[0] == "127.0.0.1"
        html = urllib.request.urlopen(base + "/", timeout=10).read().decode("utf-8")
        assert '"live":true' in html and html == page

        def post(body: bytes):
            req = urllib.request.Request(base + "/api/states", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        code, d = post(json.dumps({"text": "gh ab"}).encode())
        assert code == 200 and d["steps"] == 5 and d["text"] == "gh ab"
        code, d = post(json.dumps({"text": "xyz"}).encode())
        assert code == 400 and "character 'x' is not in the model's vocabulary" in d["error"]
        code, d = post(b"{not json")
        assert code == 400 and "Expecting property name" in d["error"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/other", timeout=10)
        assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_serve_from_the_command_line(text_run):
    """`lstmkit inspect --serve --port 0` prints its address and serves the page until stopped."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "lstmkit", "inspect", text_run, "--text", TEXT[:40], "--serve",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        for line in proc.stdout:
            m = re.search(r"serving\s+(http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
                break
        assert url, proc.stderr.read() if proc.poll() is not None else "no 'serving' line"
        body = urllib.request.urlopen(url, timeout=10).read().decode("utf-8")
        assert 'id="lk-data"' in body and '"live":true' in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)
