"""Numbers for the terminal: one helper that `raftkit inspect` and the run's per-iteration line share.

A fixed number of decimals prints a KL of 0.00001 or a learning rate of 1e-05 as ``0.000``, which reads as
zero; ``fmt`` keeps such values readable and prints the rest with the usual fixed decimals.
"""

from __future__ import annotations

import math
from typing import Any

DASH = "–"


def fmt(value: Any, digits: int = 3, sign: bool = False) -> str:
    """A metric value for a table cell or a status line.

    Floats get ``digits`` decimals; one too small to show a non-zero digit that way gets two significant
    digits (scientific below 1e-4), one of 1e5 or more is scientific. None prints as a dash, an int as an
    int, a bool as yes/no.

    >>> fmt(0.5), fmt(1e-05), fmt(0.00042), fmt(0.0), fmt(123456.0), fmt(3), fmt(None), fmt(-2.5e-07, 2)
    ('0.500', '1e-05', '0.00042', '0.000', '1.23e+05', '3', '–', '-2.5e-07')
    >>> fmt(0.25, sign=True), fmt(3e-06, sign=True)
    ('+0.250', '+3e-06')
    """
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        plus = "+" if sign else ""
        if digits > 0 and abs(value) >= 1e5:
            return f"{value:{plus}.{digits - 1}e}"
        if value != 0 and abs(value) < 0.5 * 10 ** -digits:  # would print as 0.000
            return f"{value:{plus}.2g}"
        return f"{value:{plus}.{digits}f}"
    return str(value)
