"""A bench report as one self-contained HTML page (report.html): tables, scatter, pictures."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

from bench.format import escape
from bench.scatter import scatter_svg
from bench.tables import Span, Table, build_tables, facts, title

# |artifact - FP32| heat-maps use one fixed scale for every artifact and image, so colours compare across them.
ERROR_SCALE_MAX = 0.1
ERROR_COLORMAP = cv2.COLORMAP_INFERNO
UNCERTAINTY_COLORMAP = cv2.COLORMAP_VIRIDIS
THUMB_PX = 144  # displayed thumbnail width; the PNG keeps the picture's own resolution


# --------------------------------------------------------------------------- #
# HTML pieces
# --------------------------------------------------------------------------- #

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1800px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 6px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0}
th,td{border:1px solid #ccc;padding:3px 6px;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.reason{font-style:italic;color:#7a4b00;background:#fff8e6;white-space:normal}
tr.muted td{color:#777}
tr:nth-child(even) td{background-color:#fafafa}
p.caption{color:#555;font-size:12.5px;margin:2px 0 6px;max-width:1100px}
.pics{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;margin-bottom:14px}
figure{margin:0;width:THUMBpx}figure img{width:THUMBpx;height:auto;image-rendering:pixelated;
border:1px solid #ccc;display:block}
figcaption{font-size:11.5px;color:#333;word-break:break-word}
.bar{height:10px;width:THUMBpx;border:1px solid #ccc}
.legend{display:flex;gap:18px;flex-wrap:wrap;font-size:12px;margin:4px 0 10px}
.legend span{display:inline-flex;align-items:center;gap:6px}
""".replace("THUMB", str(THUMB_PX))


def _html_table(t: Table) -> str:
    out = [f"<h2>{escape(t.title)}</h2>"]
    if t.caption:
        out.append(f'<p class="caption">{escape(t.caption)}</p>')
    out.append('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in t.headers)
               + "</tr></thead><tbody>")
    for row, muted in zip(t.rows, t.muted or [False] * len(t.rows)):
        tds, col = [], 0
        for c in row:
            if isinstance(c, Span):
                tds.append(f'<td class="reason" colspan="{c.cols}">{escape(c.text)}</td>')
                col += c.cols
            else:
                cls = ' class="num"' if col >= t.num_from else ""
                tds.append(f"<td{cls}>{escape(c)}</td>")
                col += 1
        tr = '<tr class="muted">' if muted else "<tr>"
        out.append(tr + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _png_data_uri(image: np.ndarray) -> str:
    """PNG data URI of a ``H x W`` gray or ``H x W x 3`` BGR uint8 image."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cv2.imencode failed for an image of shape {image.shape}")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _to_u8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly onto 0..255 (clipped; NaN as 0)."""
    x = np.nan_to_num(np.asarray(values, np.float64), nan=lo, posinf=hi, neginf=lo)
    scale = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.round(np.clip(scale, 0.0, 1.0) * 255).astype(np.uint8)


def _colormap_css(colormap: int, stops: int = 11) -> str:
    """CSS linear-gradient matching an OpenCV colour map (legend bar without another image)."""
    ramp = cv2.applyColorMap(np.linspace(0, 255, stops).round().astype(np.uint8).reshape(-1, 1), colormap)
    cols = [f"rgb({int(px[2])},{int(px[1])},{int(px[0])})" for px in ramp[:, 0, :]]  # BGR -> rgb()
    return "linear-gradient(to right," + ",".join(cols) + ")"


def _figure(uri: str, caption: str, bar_css: str | None = None) -> str:
    bar = f'<div class="bar" style="background:{bar_css}"></div>' if bar_css else ""
    return (f'<figure><img src="{uri}" alt="{escape(caption)}">{bar}'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _picture_block(pic: dict) -> str:
    """One row of thumbnails for one test image."""
    figs = []
    rgb = np.asarray(pic["input"])
    if rgb.dtype != np.uint8:
        rgb = _to_u8(rgb, 0.0, 1.0 if float(np.nanmax(rgb)) <= 1.0 else 255.0)
    figs.append(_figure(_png_data_uri(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), "input"))
    figs.append(_figure(_png_data_uri(_to_u8(pic["gt"], 0.0, 1.0)), "ground truth alpha"))
    fp32 = np.asarray(pic["fp32"], np.float64)
    figs.append(_figure(_png_data_uri(_to_u8(fp32, 0.0, 1.0)), "FP32 reference alpha"))
    b = pic.get("uncertainty")
    if b is not None:
        b = np.asarray(b, np.float64)
        lo, hi = float(np.nanmin(b)), float(np.nanmax(b))
        uri = _png_data_uri(cv2.applyColorMap(_to_u8(b, lo, hi), UNCERTAINTY_COLORMAP))
        figs.append(_figure(uri, f"teacher uncertainty b, viridis {lo:.3g} .. {hi:.3g} (this image)",
                            _colormap_css(UNCERTAINTY_COLORMAP)))
    for name, alpha in (pic.get("artifacts") or {}).items():
        alpha = np.asarray(alpha, np.float64)
        figs.append(_figure(_png_data_uri(_to_u8(alpha, 0.0, 1.0)), f"{name} alpha"))
        err = np.abs(alpha - fp32)
        heat = cv2.applyColorMap(_to_u8(err, 0.0, ERROR_SCALE_MAX), ERROR_COLORMAP)
        figs.append(_figure(_png_data_uri(heat), f"|{name} - FP32|, scale 0 .. {ERROR_SCALE_MAX:g}, max {float(np.nanmax(err)):.3g}",
                            _colormap_css(ERROR_COLORMAP)))
    return f"<h3>{escape(pic.get('id', 'image'))}</h3>\n<div class=\"pics\">" + "".join(figs) + "</div>"


def _pictures_section(pictures: Sequence[dict]) -> str:
    if not pictures:
        return ""
    intro = (f"Alphas are gray (black 0, white 1). Error heat-maps show |artifact - FP32 alpha| on a fixed inferno "
             f"scale 0 .. {ERROR_SCALE_MAX:g} (clipped above), the same for every artifact and image; each caption gives "
             f"the image's largest error. The teacher's uncertainty b uses viridis from the image's own minimum "
             f"to maximum.")
    return "<h2>Pictures</h2>\n" + f'<p class="caption">{escape(intro)}</p>\n' + "\n".join(
        _picture_block(p) for p in pictures)


# --------------------------------------------------------------------------- #
# HTML document
# --------------------------------------------------------------------------- #

def render_html(report: dict, pictures: Sequence[dict] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, PNG data URIs, inline SVG; no scripts, no URLs).

    Args:
        report: a ``facemat-bench/1`` report dict.
        pictures: optional test images to show, each ``{"id": str, "input": H x W x 3 uint8 RGB,
            "gt": H x W float [0, 1], "fp32": H x W float [0, 1], "uncertainty": H x W float (teacher b) or None,
            "artifacts": {artifact id: H x W float [0, 1]}}``.

    Returns:
        The HTML text: header facts, the same tables as :func:`render_markdown`, a latency-vs-error
        scatter, then per picture a row of thumbnails (input, ground truth, FP32 alpha, uncertainty map,
        and per artifact its alpha and an |artifact - FP32| heat-map on a fixed 0 .. ``ERROR_SCALE_MAX`` scale).
    """
    heading = title(report)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(heading)}</title><style>{_CSS}</style></head><body>", f"<h1>{escape(heading)}</h1>",
             '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts(report)) + "</dl>"]
    tables, remarks = build_tables(report)
    parts.append(_html_table(tables[0]))
    svg, caption = scatter_svg(report)
    parts.append("<h2>Latency vs error</h2>")
    if svg:
        parts.append(f'<div class="scroll">{svg}</div>')
    parts.append(f'<p class="caption">{escape(caption)}</p>')
    parts += [_html_table(t) for t in tables[1:]]
    notes = list(report.get("notes") or []) + remarks
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(_pictures_section(pictures or []))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"
