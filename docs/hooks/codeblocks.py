"""Run the code blocks of a documentation page, in order, as a reader would.

Used by the site build (tutorial pages: their output and figures go into the site) and by
tests/test_docs.py (every other page). A page's ```python blocks share one namespace; its
```bash blocks are commands:

- ``lstmkit ...`` and ``python -m lstmkit ...`` run in this process through ``lstmkit.cli.main``
  (no interpreter start-up per command) and must exit 0;
- ``torchrun ... -m lstmkit ...`` and ``python path/to/script.py ...`` run as subprocesses;
- set-up lines (``pip install``, ``python3 -m venv``, ``mkdocs``, ``apt-get``) are not run: each
  ``.[extra]`` they name must exist in pyproject.toml, so an install line cannot drift.
  (The test command itself is what CI runs; the site build is what the tests run.)

Anything else is an error, so a block cannot pass by being skipped. With ``quick=True`` training
is shortened (QUICK_STEPS optimizer steps, a few seconds of budget): the documented mechanism
that lets the test suite execute every training command of the guides in a couple of minutes.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

FENCE = re.compile(r"^(?P<fence>```+)(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<code>.*?)^(?P=fence)[ \t]*$",
                   re.MULTILINE | re.DOTALL)
RUN_LANGS = ("python", "bash")
EXECUTED_AT_BUILD = "tutorials/"  # pages the site build runs (docs/hooks/build.py); the tests run the others
QUICK_STEPS = 6
QUICK_BUDGET = "3"
# Quick runs of `lstmkit train TASK` also take these options unless the command sets them, because
# evaluation would otherwise cost far more than the shortened training: the character LM scores the
# whole validation text (110 k characters) and fits an n-gram beside it; translation decodes 500
# validation sentences through an 8,000-word output layer, and `translate --test` 2,000 test dates.
QUICK_TASK_OPTIONS = {
    "text": {"--hidden_size": "64", "--ngram_context": "0"},
    "translate": {"--max_vocab": "1000", "--eval_size": "32", "--test_size": "200"},
}
SETUP = ("pip", "python3", "apt-get", "mkdocs", "cd", "git")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Block:
    lang: str
    code: str
    start: int  # offsets of the whole fenced block in the page
    end: int
    skip: bool  # a block marked ``norun`` (output shown on the page, not a command)


class BlockError(RuntimeError):
    """A documentation code block failed; the message names the page, the block and the error."""


def blocks(markdown: str) -> list[Block]:
    """The fenced code blocks of a page (python and bash are run; the others are text)."""
    out = []
    for m in FENCE.finditer(markdown):
        out.append(Block(m["lang"], m["code"], m.start(), m.end(), "norun" in m["attrs"]))
    return out


def commands(code: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", code)
    out, pending = [], ""
    for line in joined.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            argv = shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        pending = ""
        if argv:
            out.append(argv)
    if pending:
        raise BlockError(f"unbalanced quotes in the command {pending!r}")
    return out


def check_setup(argv: list[str]) -> None:
    """An install line: every extra it names must be declared in pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for word in argv:
        for group in re.findall(r"\[([\w,-]+)\]", word):
            for extra in group.split(","):
                if extra not in extras:
                    raise BlockError(f"{' '.join(argv)!r} names the extra {extra!r}, which pyproject.toml does not declare")


def shorten(argv: list[str]) -> list[str]:
    """The quick form of an lstmkit command: fewer training steps, a small time budget."""
    argv = list(argv)
    caps = {"--train.steps": str(QUICK_STEPS), "--steps": str(QUICK_STEPS), "--budget": QUICK_BUDGET}
    for k, word in enumerate(argv[:-1]):
        if word in caps:
            argv[k + 1] = str(min(float(argv[k + 1]), float(caps[word]))).removesuffix(".0")
    cmd = argv[0] if argv else ""
    if cmd == "train" and "--train.steps" not in argv and "--list" not in argv and "--resume" not in argv:
        argv += ["--train.steps", str(QUICK_STEPS)]
    if cmd == "train" and len(argv) > 1:
        for option, value in QUICK_TASK_OPTIONS.get(argv[1], {}).items():
            if option not in argv:
                argv += [option, value]
    if cmd in ("demo", "tasks") and "--steps" not in argv:
        argv += ["--steps", str(QUICK_STEPS)]
    if cmd in ("demo", "tasks", "gradients") and "--budget" not in argv:
        argv += ["--budget", QUICK_BUDGET]
    return argv


def run_lstmkit(argv: list[str], quick: bool) -> str:
    from lstmkit.cli import main

    if quick:
        argv = shorten(argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    if code != 0:
        raise BlockError(f"`lstmkit {' '.join(argv)}` exited with {code}: {err.getvalue().strip()[-800:]}")
    return out.getvalue()


def run_process(argv: list[str], quick: bool) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")]))
    if argv[0] == "torchrun":
        k = argv.index("-m")
        head, rest = argv[1:k], argv[k + 2:]
        argv = [sys.executable, "-m", "torch.distributed.run", *head, "-m", "lstmkit", *(shorten(rest) if quick else rest)]
    else:  # a script of the repository (benchmarks/…) is found from any folder the page runs in
        script = argv[1] if os.path.isabs(argv[1]) else os.path.join(ROOT, argv[1])
        argv = [sys.executable, script, *argv[2:]]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        raise BlockError(f"`{' '.join(argv)}` exited with {p.returncode}: {(p.stderr or p.stdout).strip()[-800:]}")
    return p.stdout


def run_command(argv: list[str], quick: bool) -> str:
    if "&&" in argv:  # a chain: each part in turn (a failing part raises, as && would stop)
        k = argv.index("&&")
        return run_command(argv[:k], quick) + run_command(argv[k + 1:], quick)
    argv = [os.path.basename(argv[0]), *argv[1:]]  # .venv/bin/lstmkit is lstmkit
    if argv[0] in ("python", "python3") and argv[1:3] == ["-m", "pytest"]:
        return ""  # the test command itself: CI runs it (.ci/run)
    if argv[0] == "lstmkit":
        return run_lstmkit(argv[1:], quick)
    if argv[0] in ("python", "python3") and argv[1:3] == ["-m", "lstmkit"]:
        return run_lstmkit(argv[3:], quick)
    if argv[0] in SETUP and not (argv[0] == "python3" and len(argv) > 1 and argv[1].endswith(".py")):
        check_setup(argv)
        return ""
    if argv[0] == "torchrun" or (argv[0] in ("python", "python3") and len(argv) > 1 and argv[1].endswith(".py")):
        return run_process(argv, quick)
    raise BlockError(f"the docs runner does not know how to run {' '.join(argv)!r}")


def run_blocks(markdown: str, workdir: str, page: str = "", quick: bool = False) -> list[tuple[Block, str]]:
    """Run the page's python and bash blocks in order in workdir; (block, what it printed) for each.

    Raises BlockError naming the page and the block's first line when one fails.
    """
    import torch

    namespace: dict = {"__name__": "__docs__"}
    results = []
    old, threads = os.getcwd(), torch.get_num_threads()  # commands set threads (--threads): put them back
    os.chdir(workdir)
    try:
        for n, block in enumerate(blocks(markdown), 1):
            if block.lang not in RUN_LANGS or block.skip:
                continue
            first = block.code.strip().splitlines()[0] if block.code.strip() else ""
            try:
                if block.lang == "python":
                    out = io.StringIO()
                    with contextlib.redirect_stdout(out):
                        exec(compile(block.code, f"{page}:block{n}", "exec"), namespace)
                    text = out.getvalue()
                else:
                    text = "".join(run_command(argv, quick) for argv in commands(block.code))
            except BlockError as e:
                raise BlockError(f"{page}, block {n} ({first!r}): {e}") from None
            except Exception as e:
                raise BlockError(f"{page}, block {n} ({first!r}): {type(e).__name__}: {e}") from e
            results.append((block, text))
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    return results


def page_outputs(markdown: str, results: list[tuple[Block, str]], max_lines: Optional[int] = 40) -> str:
    """The page with each block's printed output shown below it (long outputs cut to max_lines)."""
    pieces, pos = [], 0
    for block, text in results:
        pieces.append(markdown[pos:block.end])
        pos = block.end
        text = text.rstrip()
        if text:
            lines = text.splitlines()
            if max_lines and len(lines) > max_lines:
                lines = lines[:max_lines] + [f"... ({len(text.splitlines()) - max_lines} more lines)"]
            body = "\n".join(lines).replace("```", "'''")
            pieces.append(f'\n\n```text title="output (computed when this page was built)"\n{body}\n```')
    pieces.append(markdown[pos:])
    return "".join(pieces)
