"""Number formatting shared by every bench rendering (report.md, report.html, bench.compare).

None shows as a dash, non-finite values are spelled out (``inf``, ``nan``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

import numpy as np

DASH = "—"


# --------------------------------------------------------------------------- #
# Number formatting
# --------------------------------------------------------------------------- #

def is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def special(v: float) -> str | None:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def fmt_fixed(v: Any, digits: int) -> str:
    """``v`` with ``digits`` decimals; ``—`` for None, ``inf`` / ``nan`` spelled out."""
    if not is_num(v):
        return DASH
    return special(float(v)) or f"{float(v):.{digits}f}"


def fmt_sci(v: Any) -> str:
    """MSE-like values: 4 significant digits in scientific notation, exact ``0`` for zero."""
    if not is_num(v):
        return DASH
    v = float(v)
    return special(v) or ("0" if v == 0.0 else f"{v:.3e}")


def fmt_ms(v: Any) -> str:
    """Latency in ms: 3 decimals below 1 ms, 2 below 100 ms, else 1."""
    if not is_num(v):
        return DASH
    v = float(v)
    return special(v) or f"{v:.{3 if abs(v) < 1 else 2 if abs(v) < 100 else 1}f}"


def fmt_ratio(v: Any) -> str:
    return fmt_fixed(v, 2)


GT_FMT: dict[str, Callable[[Any], str]] = {
    "sad": lambda v: fmt_fixed(v, 3), "mse": fmt_sci, "grad": lambda v: fmt_fixed(v, 3),
    "conn": lambda v: fmt_fixed(v, 3), "iou": lambda v: fmt_fixed(v, 4),
}
def fmt_max_abs(v: Any) -> str:
    """Largest |difference|: 4 decimals, scientific below 1e-3 so FP32-vs-FP32 rounding noise stays visible."""
    if not is_num(v):
        return DASH
    v = float(v)
    return special(v) or ("0" if v == 0.0 else f"{v:.2e}" if abs(v) < 1e-3 else f"{v:.4f}")


REF_FMT: dict[str, Callable[[Any], str]] = {"max_abs": fmt_max_abs, "mse": fmt_sci, "psnr": lambda v: fmt_fixed(v, 1)}


def fmt_threads(t: Any) -> str:
    return "default" if t is None else str(t)


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)
