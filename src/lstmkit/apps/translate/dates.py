"""Date normalization: a seeded generator of dates written the many ways people write them → ISO 8601.

    "23rd of November 2026", "Nov 23, 2026", "Monday, November 23, 2026", "23.11.2026",
    "the 23rd of november, 2026", "23-NOV-2026", …  →  "2026-11-23"

Dates are drawn uniformly from 1900-01-01 … 2099-12-31 and written in one of FORMATS, then
cased as written, all lowercase or all uppercase. Weekdays are the true ones. Numeric forms are
day-first only (no "11/23" vs "23/11" ambiguity), so every source has exactly one answer.

One date in twenty (chosen by a hash of the date) is *held out*: training never sees it in any
form, and the validation and test sets use only held-out dates, so exact match measures
generalization to unseen dates, not recall. The test set is fixed (TEST_SEED); the training
stream is a function of (seed, batch index) only, as the Trainer's resume requires.

    >>> src, tgt = render(datetime.date(2026, 11, 23), "dmy_of", "as-is")
    >>> src, tgt
    ('23rd of November 2026', '2026-11-23')
"""
from __future__ import annotations

import datetime
import hashlib
import random
from typing import Callable

FIRST, LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
SPAN = (LAST - FIRST).days + 1
TEST_SEED, VALID_SEED = 20261123, 20261124
HELD_OUT_EVERY = 20  # one date in 20 is never trained on
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CASES = ("as-is", "lower", "upper")


def ordinal(n: int) -> str:
    """1 → "1st", 2 → "2nd", 11 → "11th", 23 → "23rd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _mon(d: datetime.date) -> str:
    return MONTHS[d.month - 1][:3]


def _wd(d: datetime.date) -> str:
    return WEEKDAYS[d.weekday()]


FORMATS: dict[str, Callable[[datetime.date], str]] = {
    "dmy_of": lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    "the_dmy_of": lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    "mdy": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "mdy_short": lambda d: f"{_mon(d)} {d.day}, {d.year}",
    "mdy_short_dot": lambda d: f"{_mon(d)}. {d.day} {d.year}",
    "mdy_ordinal": lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",
    "wmdy": lambda d: f"{_wd(d)}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    "wdmy": lambda d: f"{_wd(d)} {d.day} {MONTHS[d.month - 1]} {d.year}",
    "wmdy_short": lambda d: f"{_wd(d)[:3]}, {_mon(d)} {d.day}, {d.year}",
    "dmy": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "dmy_short": lambda d: f"{d.day} {_mon(d)} {d.year}",
    "dmy_dash": lambda d: f"{d.day:02d}-{_mon(d)}-{d.year}",
    "dmy_dots": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "dmy_slash": lambda d: f"{d.day}/{d.month}/{d.year}",
    "ymd_slash": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
}


def iso(d: datetime.date) -> str:
    return d.isoformat()  # YYYY-MM-DD


def held_out(d: datetime.date) -> bool:
    """True for the dates kept for validation and test (one in HELD_OUT_EVERY, by hash)."""
    h = hashlib.blake2b(d.isoformat().encode(), digest_size=4).digest()
    return int.from_bytes(h, "big") % HELD_OUT_EVERY == 0


def render(d: datetime.date, fmt: str, case: str) -> tuple[str, str]:
    """(source text, ISO target) of date d in format ``fmt`` and letter case ``case``."""
    text = FORMATS[fmt](d)
    text = text.lower() if case == "lower" else text.upper() if case == "upper" else text
    return text, iso(d)


def sample(rng: random.Random, held: bool) -> tuple[str, str]:
    """One (source, target) pair whose date is held out (held=True) or trainable (False)."""
    while True:
        d = FIRST + datetime.timedelta(days=rng.randrange(SPAN))
        if held_out(d) == held:
            break
    fmt = rng.choice(tuple(FORMATS))
    case = rng.choices(CASES, weights=(6, 3, 1))[0]
    return render(d, fmt, case)


def train_batch(seed: int, k: int, n: int) -> list[tuple[str, str]]:
    """Training batch k: n pairs of trainable dates, a function of (seed, k) only."""
    rng = random.Random(f"dates-train-{seed}-{k}")
    return [sample(rng, held=False) for _ in range(n)]


def held_out_set(n: int, seed: int) -> list[tuple[str, str]]:
    """n pairs of held-out dates (TEST_SEED: the fixed test set; VALID_SEED: validation)."""
    rng = random.Random(f"dates-eval-{seed}")
    return [sample(rng, held=True) for _ in range(n)]


def alphabet() -> str:
    """Every character a source can contain, so the vocabulary never depends on a sample."""
    texts = [f(datetime.date(2000, 1, 1) + datetime.timedelta(days=i)) for f in FORMATS.values() for i in range(400)]
    chars = set("".join(texts)) | set("0123456789")
    chars |= {c.lower() for c in chars} | {c.upper() for c in chars}
    return "".join(sorted(chars))


__all__ = ["CASES", "FORMATS", "held_out", "held_out_set", "iso", "ordinal", "render", "sample", "train_batch",
           "alphabet"]
