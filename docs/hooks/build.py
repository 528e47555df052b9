"""mkdocs hooks: execute the tutorials and draw their figures at build time, and generate the
command-line reference from lstmkit's own argparse parser.

- Tutorial pages (docs/tutorials/*.md) are run block by block with docs/hooks/codeblocks.py in a
  scratch folder when the site is built: what each block prints is shown under it, and every
  file a page writes (the PNG figures, the explorer page) is added to the site beside the page.
  A block that raises fails the build.
- A page containing ``<!-- lstmkit:cli -->`` gets the reference of every subcommand and option,
  read from ``lstmkit.cli.build_parser()`` at build time, so it cannot drift from the code.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codeblocks  # noqa: E402

log = logging.getLogger("mkdocs.hooks.lstmkit")
CLI_MARKER = "<!-- lstmkit:cli -->"
_outputs: dict[str, list] = {}


def on_startup(command, dirty):
    os.environ.setdefault("MPLBACKEND", "Agg")


def on_files(files, config):
    """Run every tutorial; add the files each one wrote to the site next to it."""
    import torch

    torch.set_num_threads(1)  # small models: one thread is fastest, and the build shares the machine
    _outputs.clear()
    for f in sorted(list(files.documentation_pages()), key=lambda f: f.src_uri):
        if not f.src_uri.startswith(codeblocks.EXECUTED_AT_BUILD):
            continue
        with open(f.abs_src_path, encoding="utf-8") as fh:
            markdown = fh.read()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="lstmkit-docs-") as work:
            try:
                _outputs[f.src_uri] = codeblocks.run_blocks(markdown, work, page=f.src_uri)
            except codeblocks.BlockError as e:
                raise PluginError(str(e)) from None
            folder = os.path.dirname(f.src_uri)
            for name in sorted(os.listdir(work)):
                path = os.path.join(work, name)
                if not os.path.isfile(path) or name.startswith("."):
                    continue
                uri = f"{folder}/{name}" if folder else name
                if files.get_file_from_path(uri) is not None:
                    raise PluginError(f"{f.src_uri} wrote {name}, which another page or file already provides")
                with open(path, "rb") as fh:
                    files.append(File.generated(config, uri, content=fh.read()))
        log.info(f"executed {f.src_uri} in {time.perf_counter() - start:.1f} s")
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri in _outputs:
        markdown = codeblocks.page_outputs(markdown, _outputs[page.file.src_uri])
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown


# ------------------------------------------------------------------ the CLI reference
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    meta = ""
    if action.nargs != 0:
        meta = " " + (action.metavar if isinstance(action.metavar, str) else
                      "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper())
    return ", ".join(f"`{s}{meta}`" for s in action.option_strings)


def _cell(text: str) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def cli_reference() -> str:
    from lstmkit.cli import build_parser, main

    parser = build_parser()
    parts = ["## `lstmkit`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in _subparsers(parser).items():
        parts += [f"## `lstmkit {name}`", "", f"```text\n{sub.format_usage().strip()}\n```", ""]
        if sub.description:
            parts += ["```text", sub.description.strip(), "```", ""]
        rows = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        if rows:
            parts += ["| argument | default | meaning |", "|---|---|---|"]
            for a in rows:
                default = "" if a.default in (None, argparse.SUPPRESS) or a.nargs == 0 else f"`{a.default}`"
                if a.required and a.option_strings:
                    default = "required"
                parts.append(f"| {_flags(a)} | {default} | {_cell(a.help)} |")
            parts.append("")
        if sub.epilog:
            parts += ["```text", sub.epilog.strip(), "```", ""]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["train", "--list"])
    parts += ["## Tasks and options of `lstmkit train`", "",
              "What `lstmkit train --list` prints: every task, and every option a run file or the command line "
              "may set for it.", "", "```text", out.getvalue().rstrip(), "```", ""]
    return "\n".join(parts)
