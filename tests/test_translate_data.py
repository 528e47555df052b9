"""Translation data: reversible tokenizers and vocabularies, gettext catalogs, TSV files, the split, dates."""
from __future__ import annotations

import datetime
import re
import struct

import pytest

from lstmkit.apps import DataError
from lstmkit.apps.translate import dates as D
from lstmkit.apps.translate.data import (catalog_files, clean_pair, gettext_pairs, read_tsv,
                                         split_of, split_pairs)
from lstmkit.apps.vocab import EOS, SPECIALS, UNK, Vocab, tokenize


# --------------------------------------------------------------------------- vocabulary

@pytest.mark.parametrize("kind", ["char", "word"])
def test_tokenizers_are_reversible(kind):
    for text in ["Open the file.", "l'option --fix-missing n'est pas reconnue ; « hold »", "23rd of November 2026",
                 "Ça marche : 100 % ! (voir man 5 apt.conf)", "a  b", " lead", "日本語のテキスト"]:
        assert "".join(tokenize(text, kind)) == text


def test_word_tokens_carry_their_space():
    assert tokenize("Open the file.", "word") == ["Open", " the", " file", "."]
    assert tokenize("l'option --all", "word") == ["l", "'", "option", " -", "-", "all"]


@pytest.mark.parametrize("kind", ["char", "word"])
def test_vocab_round_trip_and_unknowns(kind):
    train = ["Open the file.", "Close the file.", "Open the window."]
    v = Vocab.build(train, kind)
    assert v.tokens[:4] == SPECIALS
    for text in train:
        ids = v.encode(text)
        assert UNK not in ids and v.decode(ids) == text
        assert v.decode(ids.tolist() + [EOS, 7, 8]) == text  # decoding stops at </s>
    assert Vocab(v.tokens, kind) == v  # what a run saves rebuilds the same mapping
    ids = v.encode("Open the zebra.")
    assert UNK in ids and "<unk>" in v.decode(ids)
    assert v.unknown("Open the zebra zebra.") == ([" zebra"] if kind == "word" else ["z", "b", "r", "a"])


def test_subword_cuts_rare_words_into_known_pieces():
    train = ["the file system", "the files", "the filesystem is full", "open the file"] * 3 + ["mtime and ctime"]
    v = Vocab.build(train, "subword", max_size=40, min_count=2)
    assert " the" in v.tokens and " file" in v.tokens  # frequent words stay whole
    for text in train + ["the mfile is xyz", "Ctimes!"]:
        assert "".join(v.split(text)) == text
    for text in train + ["the mfile times"]:  # characters all seen in training: nothing is <unk>
        assert v.decode(v.encode(text)) == text
    assert v.decode(v.encode("Ctimes!")) == "<unk>times<unk>"
    assert v.split(" mtime")[0] == " " and len(v.split("mtime")) < len("mtime")  # n-gram pieces, not characters
    assert v.unknown("xqz time") == ["x", "q", "z"]
    assert Vocab(v.tokens, "subword").split("the mtime") == v.split("the mtime")


def test_vocab_frequency_cut_is_deterministic():
    texts = ["x a a c", "a b d b", "y a"]
    v = Vocab.build(texts, "word", min_count=2)
    assert v.tokens[4:] == (" a", " b")  # counts 3 and 2 ("a" at the start is another token); the rest once
    assert Vocab.build(texts, "word", max_size=5).tokens[4:] == (" a",)
    assert Vocab.build([], "char", always="ba").tokens[4:] == ("a", "b")
    with pytest.raises(ValueError, match="starts with"):
        Vocab(("a", "b"), "char")
    with pytest.raises(ValueError, match="tokens must be one of char, word, subword, got 'bpe'"):
        tokenize("x", "bpe")


# --------------------------------------------------------------------------- gettext catalogs

def write_mo(path, entries: dict) -> None:
    """A GNU .mo file (little-endian, no hash table) holding entries {msgid: msgstr}.

    A tuple key (singular, plural) with a list value writes a plural entry.
    """
    items = {"": "Content-Type: text/plain; charset=UTF-8\n"}
    items.update(entries)
    keys, values = [], []
    for k, v in items.items():
        if isinstance(k, tuple):
            keys.append("\x00".join(k).encode())
            values.append("\x00".join(v).encode())
        else:
            keys.append(k.encode())
            values.append(v.encode())
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    keys, values = [keys[i] for i in order], [values[i] for i in order]
    n = len(keys)
    start = 28 + 16 * n
    blob, ktab, vtab = b"", [], []
    for k in keys:
        ktab.append((len(k), start + len(blob)))
        blob += k + b"\x00"
    for v in values:
        vtab.append((len(v), start + len(blob)))
        blob += v + b"\x00"
    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    body = b"".join(struct.pack("<2I", *e) for e in ktab) + b"".join(struct.pack("<2I", *e) for e in vtab)
    path.write_bytes(head + body + blob)


CATALOG = {
    "Open the file.": "Ouvrir le fichier.",
    "_Save As": "_Enregistrer sous",  # accelerators are stripped
    "&Quit": "&Quitter",
    "Installed: ": "Installé\u00a0: ",  # no-break space → space, ends trimmed
    "menu\x04Print": "Imprimer",  # msgctxt prefix removed
    "It’s done": "C’est fait",  # ’ → '
    "%s not found": "%s introuvable",  # format strings: dropped
    "{0} files": "{0} fichiers",
    "Remove ${name}": "Supprimer ${name}",
    "<b>Bold</b> text": "texte <b>gras</b>",  # markup: dropped
    "Tom &amp; Jerry": "Tom &amp; Jerry chez nous",
    "Usage:\n  apt install": "Utilisation :\n  apt install",  # layout text: dropped
    "GNOME": "GNOME",  # identical: dropped
    "12345": "12 345",  # no letter: dropped
    "Untranslated": "",
    ("%d file", "%d files"): ["%d fichier", "%d fichiers"],  # plural: dropped
}


def test_clean_pair_rules():
    assert clean_pair("_Save As", "_Enregistrer sous") == ("Save As", "Enregistrer sous")
    assert clean_pair("x" * 200, "y" * 10) is None
    assert clean_pair("A long one", "Un long", max_chars=5) is None
    assert clean_pair(("a", 0), "b") is None
    assert clean_pair("", "header") is None
    assert clean_pair("100%% done", "100%% fait") is None
    assert clean_pair("%H: bad reloc", "%H : mauvaise relocalisation") is None


def test_gettext_loader_on_a_written_catalog(tmp_path):
    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    write_mo(folder / "b.mo", CATALOG)
    write_mo(folder / "a.mo", {"Open the file.": "Ouvre le fichier."})  # the same source, another translation
    write_mo(folder / "c.mo", {"Open the file.": "Ouvre le fichier.", "Cancel": "Annuler"})
    (folder / "broken.mo").write_bytes(b"not a catalog at all")  # skipped, not fatal
    pairs = dict(gettext_pairs("fr", str(tmp_path)))
    assert pairs == {
        "Open the file.": "Ouvre le fichier.",  # 2 votes against 1
        "Save As": "Enregistrer sous", "Quit": "Quitter", "Installed:": "Installé :", "Print": "Imprimer",
        "It's done": "C'est fait", "Cancel": "Annuler",
    }
    with pytest.raises(DataError, match="no gettext catalogs .* in .*de/LC_MESSAGES"):
        gettext_pairs("de", str(tmp_path))


@pytest.mark.skipif(not catalog_files(), reason="no French gettext catalogs installed")
def test_real_catalogs_give_thousands_of_clean_pairs():
    pairs = gettext_pairs()
    parts = split_pairs(pairs)
    n = len(pairs)
    assert n > 1000
    assert len({s for s, _ in pairs}) == n  # one translation per source
    assert 0.85 < len(parts["train"]) / n < 0.95 and 0.02 < len(parts["test"]) / n < 0.08
    fmt = re.compile(r"%[sd]|\{\d\}")
    for s, t in pairs:
        assert s != t and s == s.strip() and "  " not in s and "\n" not in t and not fmt.search(s)


def test_split_is_fixed_by_the_source_text():
    pairs = [(f"message number {i}", f"message numéro {i}") for i in range(2000)]
    parts = split_pairs(pairs)
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [sum(split_of(p[0]) == s for p in pairs)
                                                                  for s in ("train", "valid", "test")]
    assert 1700 < len(parts["train"]) < 1900 and len(parts["valid"]) > 50 and len(parts["test"]) > 50
    # Dropping half the pairs moves none of the others to another split.
    again = split_pairs(pairs[::2])
    for s in ("train", "valid", "test"):
        assert set(again[s]) <= set(parts[s])


def test_tsv_reading_and_its_errors(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("hello\tbonjour\n\n  good   night \tbonne nuit\nhello\tsalut\n", encoding="utf-8")
    assert read_tsv(str(p)) == [("hello", "bonjour"), ("good night", "bonne nuit")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("one\tun\ntwo deux\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.tsv, line 2: expected source<TAB>target, got 0 tabs"):
        read_tsv(str(bad))
    bad.write_text("one\t \n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1: empty target"):
        read_tsv(str(bad))
    with pytest.raises(DataError, match="no such file"):
        read_tsv(str(tmp_path / "nope.tsv"))
    bad.write_bytes(b"caf\xe9\tcafe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_tsv(str(bad))


# --------------------------------------------------------------------------- dates

MONTHS = {m.lower(): i + 1 for i, m in enumerate(D.MONTHS)} | {m[:3].lower(): i + 1 for i, m in enumerate(D.MONTHS)}


def parse_back(text: str) -> datetime.date:
    """An independent reading of a generated source: numbers and month names, day-first."""
    t = text.lower()
    words = re.findall(r"[a-z]+", t)
    month = next((MONTHS[w] for w in words if w in MONTHS), None)
    nums = [int(n) for n in re.findall(r"\d+", t)]
    if month is not None:
        day, year = (nums[0], nums[1]) if nums[0] <= 31 else (nums[1], nums[0])
        d = datetime.date(year, month, day)
        weekday = next((w for w in words if w[:3] in {x[:3].lower() for x in D.WEEKDAYS}), None)
        if weekday is not None:
            assert D.WEEKDAYS[d.weekday()].lower().startswith(weekday)
        return d
    if nums[0] > 31:
        return datetime.date(nums[0], nums[1], nums[2])
    return datetime.date(nums[2], nums[1], nums[0])


def test_every_format_parses_back_to_its_iso_target():
    d = datetime.date(2026, 11, 23)
    assert D.render(d, "dmy_of", "as-is") == ("23rd of November 2026", "2026-11-23")
    assert D.render(d, "wmdy", "as-is")[0] == "Monday, November 23, 2026"
    assert D.render(d, "mdy_short", "lower")[0] == "nov 23, 2026"
    assert [D.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    seen = set()
    for src, tgt in D.train_batch(0, 0, 3000) + D.held_out_set(500, D.TEST_SEED):
        assert parse_back(src).isoformat() == tgt
        assert datetime.date.fromisoformat(tgt)
        seen.add(re.sub(r"\d+", "9", src.lower()))
    assert len(seen) > 15  # many surface forms


def test_held_out_dates_never_appear_in_training_and_sets_are_fixed():
    test = D.held_out_set(300, D.TEST_SEED)
    assert test == D.held_out_set(300, D.TEST_SEED)
    assert all(D.held_out(datetime.date.fromisoformat(t)) for _, t in test)
    train = [p for k in range(20) for p in D.train_batch(0, k, 100)]
    assert not any(D.held_out(datetime.date.fromisoformat(t)) for _, t in train)
    assert D.train_batch(0, 7, 50) == D.train_batch(0, 7, 50) != D.train_batch(1, 7, 50)
    alphabet = set(D.alphabet())
    assert all(set(s) <= alphabet for s, _ in train + test)
