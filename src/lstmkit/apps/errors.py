"""The one error every application raises for data it cannot use.

``DataError`` is a ValueError whose message is one line naming the source (a file, a built-in
set, a column) and what is wrong with it, so ``lstmkit`` prints it as is. The text and
translation apps used to have classes of their own; ``TextDataError`` and ``TranslateDataError``
remain as other names of this class.
"""
from __future__ import annotations


class DataError(ValueError):
    """Data that cannot be used as given; the message (one line) names the source and says why."""
