"""Parallel text: English→French message pairs from installed gettext catalogs, or a user's TSV file,
cleaned and split by a hash of the source into fixed train / valid / test parts.

Gettext catalogs (``/usr/share/locale/<lang>/LC_MESSAGES/*.mo``) hold the real, human
translations of the programs' messages: msgid (English) → msgstr. Read with the standard
library's ``gettext.GNUTranslations``. Cleaning (``clean_pair``) keeps a pair only if it is a
plain sentence or phrase on both sides:

- dropped: the header (msgid ""), plural forms (tuple keys), format strings (``%s``, ``%(x)s``,
  ``%1$d``, ``%H``, ``{0}``, ``{name}``, ``${x}``), markup (``<b>``, ``&amp;``), layout text (tabs or
  inner newlines: help screens, tables), pairs without a letter on either side, pairs longer
  than ``max_chars``, and pairs whose two sides are identical (names, commands);
- rewritten: the msgctxt prefix (``ctx\\x04msgid``) is removed; keyboard accelerators are
  stripped (``_Open`` → ``Open``, ``&File`` → ``File``); every run of whitespace (including
  the no-break spaces of French typography) becomes one space, ends trimmed; ’ becomes '.

The same English source in several catalogs keeps its most frequent translation (ties: the
first catalog in file-name order), so each source appears once. The split puts a source in
train / valid / test by a hash of its text (90 / 5 / 5), so adding or removing a catalog never
moves the other pairs between splits.

On the Debian machine this was written on (96 French catalogs, 83,375 entries), French gives
34,391 / 1,950 / 1,959 train / valid / test pairs (``python -m lstmkit.apps.translate.data``
prints the counts for this machine).
"""
from __future__ import annotations

import glob
import gettext
import hashlib
import os
import re
from collections import Counter
from typing import Iterable, Optional

from ..errors import DataError

LOCALE_DIR = "/usr/share/locale"
SPLITS = ("train", "valid", "test")
MAX_CHARS = 120

Pair = tuple[str, str]


TranslateDataError = DataError  # the name of the class before the apps shared one


_FORMAT = re.compile(
    r"%(\d+\$)?(\([^)]*\))?[-+#0']*(\d+|\*)?(\.(\d+|\*))?(hh|h|ll|l|L|q|j|z|t|I64|I32|I)?[A-Za-z%]"
    r"|\{[\w.\[\]!:]*\}|\$\{?\w+\}?")
_MARKUP = re.compile(r"<[A-Za-z/!][^>]*>|&[A-Za-z]+;|&#\d+;")
_ACCEL_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\w)")
_ACCEL_AMP = re.compile(r"(?<![\w&])&(?=\w)")
_SPACE = re.compile(r"\s+", re.UNICODE)
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def normalize(text: str) -> str:
    """Whitespace runs (no-break spaces too) → one space, ends trimmed; ’ → '."""
    return _SPACE.sub(" ", text.replace("\u2019", "'").replace("\u00a0", " ").replace("\u202f", " ")).strip()


def clean_side(text: str) -> Optional[str]:
    """One side of a catalog pair, cleaned; None when it is not plain text (see the module docstring)."""
    body = text.strip("\n")
    if "\n" in body or "\t" in body or _FORMAT.search(body) or _MARKUP.search(body):
        return None
    body = _ACCEL_AMP.sub("", _ACCEL_UNDERSCORE.sub("", body))
    body = normalize(body)
    return body if _LETTER.search(body) else None


def clean_pair(msgid, msgstr, max_chars: int = MAX_CHARS) -> Optional[Pair]:
    """The cleaned (English, translation) of one catalog entry, or None if it is dropped."""
    if not isinstance(msgid, str) or not msgid or not isinstance(msgstr, str) or not msgstr:
        return None  # header, plural forms, untranslated
    msgid = msgid.rsplit("\x04", 1)[-1]  # msgctxt "\x04" msgid
    src, tgt = clean_side(msgid), clean_side(msgstr)
    if src is None or tgt is None or src == tgt:
        return None
    if len(src) > max_chars or len(tgt) > max_chars:
        return None
    return src, tgt


def catalog_files(language: str = "fr", locale_dir: str = LOCALE_DIR) -> list[str]:
    """The .mo files of ``language``, sorted by name."""
    return sorted(glob.glob(os.path.join(locale_dir, language, "LC_MESSAGES", "*.mo")))


def read_catalog(path: str) -> dict:
    """msgid → msgstr of one .mo file (plural entries have (msgid, n) keys)."""
    with open(path, "rb") as f:
        try:
            return gettext.GNUTranslations(f)._catalog  # the parsed table; no public accessor exists
        except (OSError, ValueError, UnicodeDecodeError) as e:  # a corrupt catalog: bad magic, bad charset
            raise DataError(f"{path}: not a readable gettext catalog ({e})") from None


def gettext_pairs(language: str = "fr", locale_dir: str = LOCALE_DIR, max_chars: int = MAX_CHARS,
                  files: Optional[Iterable[str]] = None) -> list[Pair]:
    """Cleaned, de-duplicated (English, translation) pairs from every catalog of ``language``.

    A catalog that cannot be parsed is skipped (one broken package should not cost the rest);
    no catalog at all is an error naming the folder searched.
    """
    paths = list(files) if files is not None else catalog_files(language, locale_dir)
    if not paths:
        where = os.path.join(locale_dir, language, "LC_MESSAGES")
        raise DataError(f"no gettext catalogs (*.mo) in {where}; install packages with translations "
                                 f"(e.g. apt-get install iso-codes) or give --data a TSV file of pairs")
    votes: dict[str, Counter] = {}
    for path in paths:
        try:
            catalog = read_catalog(path)
        except DataError:
            continue
        for msgid, msgstr in catalog.items():
            pair = clean_pair(msgid, msgstr, max_chars)
            if pair is not None:
                votes.setdefault(pair[0], Counter())[pair[1]] += 1
    # most_common keeps first-seen order among equal counts: the first catalog by name wins ties
    return [(src, c.most_common(1)[0][0]) for src, c in votes.items()]


def read_tsv(path: str, max_chars: int = 0) -> list[Pair]:
    """(source, target) pairs from a UTF-8 file of ``source<TAB>target`` lines.

    Blank lines are skipped; whitespace is normalized as for catalogs; a line without exactly
    one tab, or with an empty side, is an error naming its line number. ``max_chars`` > 0 drops
    longer pairs. A source given twice keeps its first target.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (give 'dates', 'gettext' or a TSV file of "
                                 "source<TAB>target lines)")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (undecodable byte at offset {e.start})") from None
    pairs: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError(f"{path}, line {n}: expected source<TAB>target, got {len(parts) - 1} tabs")
        src, tgt = normalize(parts[0]), normalize(parts[1])
        if not src or not tgt:
            raise DataError(f"{path}, line {n}: empty {'source' if not src else 'target'}")
        if max_chars and (len(src) > max_chars or len(tgt) > max_chars):
            continue
        pairs.setdefault(src, tgt)
    if not pairs:
        raise DataError(f"{path}: holds no pairs")
    return list(pairs.items())


def _hash(source: str) -> int:
    return int.from_bytes(hashlib.blake2b(source.encode("utf-8"), digest_size=8).digest(), "big")


def split_of(source: str) -> str:
    """"train" (90 %), "valid" (5 %) or "test" (5 %), fixed by a hash of the source text."""
    bucket = _hash(source) % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


def split_pairs(pairs: Iterable[Pair]) -> dict[str, list[Pair]]:
    """{"train": [...], "valid": [...], "test": [...]}, each in a fixed order that is not alphabetical.

    Ordered by the hash of the source, so the first N of a split are a fair sample of it (sorted
    text would put every "--option" message first).
    """
    out: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    for pair in pairs:
        out[split_of(pair[0])].append(pair)
    for s in SPLITS:
        out[s].sort(key=lambda p: (_hash(p[0]) // 100, p))
    return out


if __name__ == "__main__":
    files = catalog_files()
    entries = sum(len(read_catalog(p)) for p in files)
    parts = split_pairs(gettext_pairs())
    print(f"{len(files)} catalogs, {entries:,} entries → " + " / ".join(f"{len(parts[s]):,} {s}" for s in SPLITS))
