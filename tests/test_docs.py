"""The documentation site: it builds strict, every code block of the guides runs, and the built
site works in a real browser.

- The site is built once with ``mkdocs build --strict`` (the build itself executes every block of
  the tutorials and draws their figures; a failing block fails the build).
- Every other page's ``python`` / ``bash`` blocks run in order in a fresh folder through
  docs/hooks/codeblocks.py, training commands in their documented quick form.
- The built site is served on 127.0.0.1 and opened in headless Debian chromium (Playwright): every
  page loads without a console error or a request leaving the site, every internal link and image
  resolves, and searching "forget gate" finds the page on the LSTM cell.

Outside CI, no mkdocs, no chromium or no playwright skips with the reason; in CI (CI=true) it fails.
"""
from __future__ import annotations

import functools
import glob
import http.server
import os
import subprocess
import sys
import threading
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
sys.path.insert(0, os.path.join(DOCS, "hooks"))
import codeblocks  # noqa: E402
from headless_browser import browser, unavailable  # noqa: F401 (fixture)

GUIDES = sorted(os.path.relpath(p, DOCS) for p in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
                if not os.path.relpath(p, DOCS).startswith(codeblocks.EXECUTED_AT_BUILD))



@pytest.fixture(scope="module")
def site(tmp_path_factory):
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        unavailable("mkdocs is not installed (pip install -e '.[test]')")
    out = str(tmp_path_factory.mktemp("site"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")]),
               MPLBACKEND="Agg", NO_MKDOCS_2_WARNING="1")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", out],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"mkdocs build --strict failed:\n{p.stderr[-4000:]}"
    return out


def test_site_builds_strict_with_executed_tutorials_and_generated_cli(site):
    for name in ("gates_heatmap.png", "input_node.png", "memory_cell.png", "hidden_state.png",
                 "vanishing_gradient.png", "explorer_shakespeare.html"):
        path = os.path.join(site, "tutorials", name)
        assert os.path.getsize(path) > 5_000, f"{name}: not drawn by the build"
    with open(os.path.join(site, "tutorials", "gates", "index.html"), encoding="utf-8") as f:
        page = f.read()
    assert "largest difference between the hand-computed gates" in page  # a block's output, shown under it
    with open(os.path.join(site, "reference", "cli", "index.html"), encoding="utf-8") as f:
        cli = f.read()
    from lstmkit.cli import COMMANDS

    for name in COMMANDS:
        assert f"lstmkit {name}</code>" in cli, f"the CLI reference lacks `lstmkit {name}`"
    assert "--temperature" in cli and "--train.steps" in cli


@pytest.mark.parametrize("page", GUIDES)
def test_every_code_block_of_the_guides_runs(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        markdown = f.read()
    codeblocks.run_blocks(markdown, str(tmp_path), page=page, quick=True)


# ------------------------------------------------------------------ the runner itself
def test_the_runner_fails_a_failing_block(tmp_path):
    with pytest.raises(codeblocks.BlockError, match="block 2"):
        codeblocks.run_blocks("```python\nx = 1\n```\n\n```python\nassert x == 2\n```\n", str(tmp_path), page="p")
    with pytest.raises(codeblocks.BlockError, match="exited with 2"):
        codeblocks.run_blocks("```bash\nlstmkit generate no/such/run\n```\n", str(tmp_path), page="p")
    with pytest.raises(codeblocks.BlockError, match="does not know how to run"):
        codeblocks.run_blocks("```bash\nrm -rf nothing\n```\n", str(tmp_path), page="p")
    with pytest.raises(codeblocks.BlockError, match="does not declare"):
        codeblocks.run_blocks('```bash\npip install -e ".[nosuchextra]"\n```\n', str(tmp_path), page="p")


def test_quick_form_shortens_training_only():
    assert codeblocks.shorten(["train", "text", "--train.steps", "2500"])[:4] == ["train", "text", "--train.steps", "6"]
    assert codeblocks.shorten(["train", "adding"]) == ["train", "adding", "--train.steps", "6"]
    assert codeblocks.shorten(["train", "text", "--hidden_size", "512"]) == [
        "train", "text", "--hidden_size", "512", "--train.steps", "6", "--ngram_context", "0"]
    assert codeblocks.shorten(["generate", "runs/text", "--length", "500"]) == ["generate", "runs/text", "--length", "500"]
    assert codeblocks.commands('lstmkit a \\\n  --b 1   # note\nlstmkit c "x\ny"\n') == [
        ["lstmkit", "a", "--b", "1"], ["lstmkit", "c", "x\ny"]]


# ------------------------------------------------------------------ the site in a browser
@pytest.fixture(scope="module")
def served(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()



def site_pages(site: str) -> list[str]:
    pages = []
    for path in glob.glob(os.path.join(site, "**", "index.html"), recursive=True):
        rel = os.path.relpath(os.path.dirname(path), site)
        pages.append("" if rel == "." else rel.replace(os.sep, "/") + "/")
    return sorted(pages)


def target_file(site: str, base: str, url: str) -> str:
    """The file in the built site that an internal URL (relative to base) points at."""
    path = urllib.parse.urlparse(urllib.parse.urljoin(base, url)).path
    rel = urllib.parse.unquote(path).lstrip("/")
    return os.path.join(site, rel, "index.html") if rel == "" or rel.endswith("/") else os.path.join(site, rel)


def test_every_page_loads_clean_and_every_internal_link_resolves(served, browser):
    site, root = served
    pages = site_pages(site)
    assert len(pages) >= 30, pages
    problems, broken = [], []
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: r.url.startswith(("http:", "https:")) and not r.url.startswith(root)
            and errors.append(f"request leaves the site: {r.url}"))
    for rel in pages:
        errors.clear()
        response = page.goto(root + rel, wait_until="load")
        assert response is not None and response.ok, f"{rel}: HTTP {response and response.status}"
        if rel.startswith("tutorials/explorer/"):
            page.frame_locator("iframe").locator("body[data-ready='1']").wait_for(timeout=30_000)
        if errors:
            problems.append(f"{rel}: {errors[:3]}")
        refs = page.eval_on_selector_all("a[href], img[src], iframe[src]",
                                         "els => els.map(e => e.getAttribute('href') || e.getAttribute('src'))")
        for ref in refs:
            if ref.startswith(("http:", "https:", "mailto:", "#", "data:")):
                continue
            if not os.path.exists(target_file(site, root + rel, ref.split("#")[0])):
                broken.append(f"{rel} -> {ref}")
    context.close()
    assert problems == [], problems
    assert broken == [], broken


def test_search_for_forget_gate_finds_the_lstm_page(served, browser):
    site, root = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # wide: the header shows the search box
    page.goto(root, wait_until="load")
    results = page.locator(".md-search-result__item").first
    for attempt in range(12):  # the search worker indexes the site in the background: type again until it answers
        page.fill("input.md-search__input", "")
        page.type("input.md-search__input", "forget gate")
        try:
            results.wait_for(timeout=5_000)
            break
        except Exception:
            continue
    hrefs = page.eval_on_selector_all(".md-search-result__item > a", "els => els.map(e => e.getAttribute('href'))")
    page.close()
    assert "explanation/lstm/" in hrefs[0], hrefs[:10]


def test_the_repository_cites_no_note_that_lives_outside_it():
    # The design, benchmark and data notes the code relies on are pages of docs/; a citation of a
    # file that is not in the repository cannot be followed by a reader.
    outside = [name + ".md" for name in ("DESIGN", "BENCHMARKS", "DATA_SOURCES", "STYLE")] + ["test_fused_" + "threads"]
    hits = []
    for folder in ("src", "tests", "benchmarks", "docs"):
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True):
            if not os.path.isfile(path) or path.endswith((".png", ".gz", ".safetensors", ".pt", ".pyc", ".so")):
                continue
            if ".egg-info" in path or "__pycache__" in path:  # build products, not the repository's text
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            hits += [f"{os.path.relpath(path, ROOT)}: {name}" for name in outside if name in text]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        hits += [f"README.md: {name}" for name in outside if name in f.read()]
    assert hits == [], hits


def test_the_readme_blocks_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        markdown = f.read()
    assert len(markdown.splitlines()) <= 120, "the README is a landing page; the docs hold the rest"
    codeblocks.run_blocks(markdown, str(tmp_path), page="README.md", quick=True)
