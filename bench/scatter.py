"""Latency vs MSE against FP32, drawn as an inline SVG for report.html (no plotting library)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bench.format import escape, fmt_ms, fmt_sci, fmt_threads, is_num
from bench.tables import fp32_block, row_label

# Okabe-Ito palette (colour-blind safe), assigned to runtimes in order of first appearance.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")


# --------------------------------------------------------------------------- #
# Scatter: latency vs MSE against FP32, as inline SVG
# --------------------------------------------------------------------------- #

@dataclass
class _Axis:
    lo: float
    hi: float
    log: bool
    ticks: list[float]

    def frac(self, v: float) -> float:
        if self.log:
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _axis(values: Iterable[float], log: bool) -> _Axis:
    vals = [v for v in values if v > 0] if log else list(values)
    if log:
        # A quarter-decade of headroom so points never sit on the frame.
        lo = 10 ** math.floor(math.log10(min(vals)) - 0.25)
        hi = 10 ** math.ceil(math.log10(max(vals)) + 0.25)
        if hi <= lo:
            hi = lo * 10
        decades = round(math.log10(hi / lo))
        step = max(1, math.ceil(decades / 8))
        ticks = [lo * 10 ** k for k in range(0, decades + 1, step)]
        return _Axis(lo, hi, True, ticks)
    top = max(vals) if vals and max(vals) > 0 else 1.0
    step = _nice_step(top * 1.05)
    hi = step * math.ceil(top * 1.05 / step)
    return _Axis(0.0, hi, False, [step * k for k in range(round(hi / step) + 1)])


def _tick_label(v: float, log: bool) -> str:
    if log:
        return f"1e{round(math.log10(v))}" if v < 0.01 or v >= 1e4 else f"{v:g}"
    return f"{v:g}"


def _scatter_points(report: dict) -> tuple[list[dict], list[dict]]:
    """(points with latency and MSE vs FP32, latency-only rows drawn as vertical lines)."""
    points, lines = [], []
    for r in report.get("rows", []):
        lat = (r.get("latency_ms") or {}).get("median")
        if r.get("status") != "ok" or not is_num(lat):
            continue
        block = fp32_block(r, "overall")
        if block is None and r.get("kind") == "reference":
            block = {"mse": 0.0}  # the reference is the FP32 alpha: its error against itself is 0
        mse = (block or {}).get("mse")
        if is_num(mse) and math.isfinite(float(mse)):
            points.append({"row": r, "x": float(lat), "y": float(mse)})
        else:
            lines.append({"row": r, "x": float(lat)})
    return points, lines


def _place_label(x: float, y: float, chars: int, placed: list[tuple[float, float, float, float]],
                 frame: tuple[float, float, float, float]) -> tuple[float, float, str]:
    """Greedy label placement next to a point at (x, y): the first candidate spot inside ``frame`` that
    overlaps no label placed so far (right, below right, above right, left, ...). Appends the chosen box."""
    w, h = 6.2 * chars, 12.0  # rough extent of 11 px sans-serif text
    candidates = [(8, 4, "start"), (8, 17, "start"), (8, -9, "start"), (-8, 4, "end"), (-8, 17, "end"),
                  (-8, -9, "end"), (8, 30, "start"), (8, -22, "start")]

    def box(dx: float, dy: float, anchor: str) -> tuple[float, float, float, float]:
        x0 = x + dx if anchor == "start" else x + dx - w
        return (x0, y + dy - h + 2, x0 + w, y + dy + 2)

    def free(b: tuple[float, float, float, float]) -> bool:
        inside = b[0] >= frame[0] and b[1] >= frame[1] and b[2] <= frame[2] and b[3] <= frame[3]
        return inside and not any(b[0] < q[2] and q[0] < b[2] and b[1] < q[3] and q[1] < b[3] for q in placed)

    for dx, dy, anchor in candidates:
        if free(box(dx, dy, anchor)):
            break
    else:
        dx, dy, anchor = candidates[0]  # crowded: overlap rather than drop the label
    placed.append(box(dx, dy, anchor))
    return x + dx, y + dy, anchor


def _runtime_key(row: dict) -> str:
    if row.get("kind") == "reference":
        return "reference"
    return str(row.get("target") or str(row.get("runtime") or "?").split(" ")[0])


def scatter_svg(report: dict) -> tuple[str, str]:
    """(SVG markup, caption text); empty markup when nothing has both a latency and an error."""
    points, vlines = _scatter_points(report)
    if not points:
        return "", "No row has both a latency and an MSE against FP32: no scatter."
    xs = [p["x"] for p in points] + [v["x"] for v in vlines]
    ys = [p["y"] for p in points]
    pos_y = [y for y in ys if y > 0]
    log_y = bool(pos_y) and max(pos_y) / min(pos_y) > 100
    eps = None
    if log_y:
        # Log axes cannot show 0: exact agreement is drawn at eps, a decade below the smallest error.
        eps = 10 ** (math.floor(math.log10(min(pos_y))) - 1)
        for p in points:
            p["y_plot"] = max(p["y"], eps)
    else:
        for p in points:
            p["y_plot"] = p["y"]
    pos_x = [x for x in xs if x > 0]
    log_x = bool(pos_x) and len(pos_x) == len(xs) and max(pos_x) / min(pos_x) > 50
    ax_x = _axis(xs, log_x)
    ax_y = _axis([p["y_plot"] for p in points], log_y)

    width, height = 760, 420
    ml, mr, mt, mb = 78, 200, 16, 48
    pw, ph = width - ml - mr, height - mt - mb

    def px(v: float) -> float:
        return ml + pw * ax_x.frac(v)

    def py(v: float) -> float:
        return mt + ph * (1.0 - ax_y.frac(v))

    colours: dict[str, str] = {}
    for p in points + vlines:
        colours.setdefault(_runtime_key(p["row"]), PALETTE[len(colours) % len(PALETTE)])

    s = [(f'<svg class="scatter" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
          'aria-label="latency vs MSE against FP32" font-family="system-ui,sans-serif" font-size="11">')]
    s.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#999"/>')
    for t in ax_x.ticks:
        x = px(t)
        s.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="#e4e4e4"/>')
        s.append(f'<text x="{x:.1f}" y="{mt + ph + 15}" text-anchor="middle">{escape(_tick_label(t, ax_x.log))}</text>')
    for t in ax_y.ticks:
        y = py(t)
        s.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        s.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_tick_label(t, ax_y.log))}</text>')
    x_title = "median latency (ms)" + (", log scale" if ax_x.log else "")
    y_title = "MSE vs FP32 (overall)" + (", log scale" if ax_y.log else "")
    s.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 10}" text-anchor="middle">{escape(x_title)}</text>')
    s.append(f'<text transform="translate(16 {mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle">{escape(y_title)}</text>')
    for v in vlines:
        x, c = px(v["x"]), colours[_runtime_key(v["row"])]
        label = f"{row_label(v['row'])} @{fmt_threads(v['row'].get('threads'))} (latency only)"
        s.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="{c}" stroke-dasharray="5 4">'
                 f"<title>{escape(label)}: {escape(fmt_ms(v['x']))} ms</title></line>")
        # Written along the line, from the bottom up, so it cannot collide with point labels sideways.
        s.append(f'<text transform="translate({x - 4:.1f} {mt + ph - 6}) rotate(-90)" fill="{c}">{escape(label)}</text>')
    # Labels avoid each other and every marker.
    placed = [(px(p["x"]) - 6, py(p["y_plot"]) - 6, px(p["x"]) + 6, py(p["y_plot"]) + 6) for p in points]
    for p in points:
        r = p["row"]
        x, y, c = px(p["x"]), py(p["y_plot"]), colours[_runtime_key(r)]
        label = f"{row_label(r)} @{fmt_threads(r.get('threads'))}" + (" (MSE 0)" if p["y_plot"] != p["y"] else "")
        # Filled: one thread; hollow: several threads or the runtime's default.
        fill = c if r.get("threads") == 1 else "#fff"
        tip = f"{label}: {fmt_ms(p['x'])} ms, MSE {fmt_sci(p['y'])}"
        s.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{c}" stroke-width="2">'
                 f"<title>{escape(tip)}</title></circle>")
        tx, ty, anchor = _place_label(x, y, len(label), placed, (ml, mt, ml + pw, mt + ph))
        s.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}">{escape(label)}</text>')
    ly = mt + 4
    s.append(f'<text x="{ml + pw + 16}" y="{ly + 8}" font-weight="600">runtime</text>')
    for i, (name, c) in enumerate(colours.items()):
        yy = ly + 18 + 16 * i
        s.append(f'<rect x="{ml + pw + 16}" y="{yy}" width="10" height="10" fill="{c}"/>')
        s.append(f'<text x="{ml + pw + 32}" y="{yy + 9}">{escape(name)}</text>')
    s.append("</svg>")
    caption = ("One point per artifact x threads (filled: 1 thread, hollow: more threads or the runtime default); "
               "colour by runtime; dashed vertical lines are rows with a latency but no alpha to compare "
               "(peers, latency-only ingested results).")
    if eps is not None:
        caption += f" Log y axis: an MSE of exactly 0 (e.g. the FP32 reference itself) is drawn at {eps:.0e}."
    return "\n".join(s), caption
