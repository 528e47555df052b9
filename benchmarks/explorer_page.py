"""Size and load time of the gate explorer page in headless chromium.

A character model of --layers layers × --hidden units (CharLM over the embedded Shakespeare
vocabulary; random weights, seeded — the page's size and speed do not depend on training) runs
over the first --chars characters of the embedded Shakespeare text. Printed:

  states     seconds to run the model with return_gates and collect i, f, g, o, c, h
  write      seconds to quantize, encode and write the page (atomic)
  page       its size in MB
  load       headless chromium: navigation start → the page drawn (median of --reps fresh tabs),
             from performance.now() at the moment the page marks itself ready
  unit       selecting another unit: all views redrawn (median over 10 units)
  pattern    typing a regex: mask, correlations of every unit, ranked table redrawn (median of 10)

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/explorer_page.py                 # 5,000 chars, 3 layers × 128
    PYTHONPATH=src python benchmarks/explorer_page.py --chars 5000 --layers 3 --hidden 256 --screenshot page.png
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from lstmkit.apps.text import CharLM, Vocab, load_text
from lstmkit.viz import collect_states
from lstmkit.viz.explorer import write_explorer

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chars", type=int, default=5000)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--bits", type=int, default=8, choices=(8, 16))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default="", help="keep the page here (default: a temporary folder)")
    ap.add_argument("--screenshot", default="", help="PNG of the page after typing a quote pattern")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    corpus = load_text()
    text = corpus[: args.chars]
    vocab = Vocab.from_text(corpus)
    model = CharLM(len(vocab), 64, args.hidden, args.layers).eval()

    t0 = time.perf_counter()
    with torch.no_grad():
        x = model.embedding(vocab.encode(text))  # (T, E)
    states = collect_states(model.lstm, x, list(text), title=f"Shakespeare, {len(text):,} characters")
    t_states = time.perf_counter() - t0
    folder = tempfile.mkdtemp(prefix="lk-explorer-")
    path = args.out or os.path.join(folder, "explorer.html")
    t0 = time.perf_counter()
    write_explorer(states, path, text=text, layer=args.layers - 1, bits=args.bits)
    t_write = time.perf_counter() - t0
    size = os.path.getsize(path)

    from playwright.sync_api import sync_playwright

    loads, units, patterns = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        version = browser.version
        for rep in range(args.reps):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.goto("file://" + os.path.abspath(path))
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            loads.append(page.evaluate("performance.now()") / 1000)  # ms since navigation start, at ready
            if errors:
                raise SystemExit(f"page errors: {errors}")
            if rep == 0:
                for u in range(1, 11):
                    units.append(page.evaluate(
                        "u => { const t = performance.now(); lkExplorer.selectUnit(u); return performance.now() - t; }", u))
                for k in range(10):
                    pat = '"[^"]*"' if k % 2 == 0 else "[A-Z]{2,}"
                    patterns.append(page.evaluate(
                        "p => { const t = performance.now(); lkExplorer.setPattern(p); return performance.now() - t; }", pat))
                if args.screenshot:
                    page.evaluate("lkExplorer.setPattern('^[A-Z]+\\\\.')")
                    page.evaluate("lkExplorer.selectUnit(lkExplorer.ranking()[0])")
                    page.screenshot(path=args.screenshot, full_page=False)
            page.close()
        browser.close()

    L, H = args.layers, args.hidden
    print(f"explorer page: {len(text):,} characters, CharLM {L} layers x {H} units, {args.bits}-bit values, "
          f"chromium {version}")
    print(f"  states    {t_states:8.2f} s   (run the LSTM with return_gates, collect i f g o c h)")
    print(f"  write     {t_write:8.2f} s   (quantize, base64, memory spans, atomic write)")
    print(f"  page      {size / 1e6:8.2f} MB  ({size:,} bytes; {6 * L * H * len(text) * args.bits // 8:,} bytes of values)")
    print(f"  load      {statistics.median(loads):8.2f} s   (median of {len(loads)} fresh tabs: "
          f"{', '.join(f'{v:.2f}' for v in loads)})")
    print(f"  unit      {statistics.median(units):8.1f} ms  (select another unit, every view redrawn; median of 10)")
    print(f"  pattern   {statistics.median(patterns):8.1f} ms  (type a regex: mask, r of {H} units, table; median of 10)")
    print(f"  page at   {path}")


if __name__ == "__main__":
    main()
