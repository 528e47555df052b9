"""A griffe extension for the API reference: show lstmkit's docstrings as `help()` shows them.

lstmkit's docstrings are plain text written for `help()` — equations aligned with spaces, shape
legends, `>>>` examples — not Markdown. Rendered as Markdown they would lose their alignment and
turn code such as ``model["out"](h)`` into links. So the first paragraph (the summary) stays
Markdown and the rest is shown verbatim in a text block.
"""
from __future__ import annotations

import griffe


class VerbatimDocstrings(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        doc = obj.docstring
        if doc is None or not doc.value.strip() or doc.value.lstrip().startswith("```"):
            return
        summary, _, rest = doc.value.strip().partition("\n\n")
        body = rest.strip("\n")
        doc.value = summary if not body else f"{summary}\n\n```text\n{body.replace('```', chr(39) * 3)}\n```"
