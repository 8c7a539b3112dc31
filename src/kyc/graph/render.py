"""Pictures of one ring: its members, the identifiers they share, and why it was flagged.

Two outputs with the same two-column layout (members left, shared identifiers right, an edge
per member holding an identifier, coloured by the identifier's kind; hub identifiers drawn
dashed):

- :func:`ring_html`: a self-contained HTML page (inline SVG and CSS, no script, nothing
  fetched), with the score, the reasons and their evidence in a table;
- :func:`ring_png`: a PNG drawn with matplotlib (optional: ``pip install 'kyc[plot]'``).

Only hashed tokens appear, shortened to their kind and first hex digits
(``device:3fa2c1``); raw identifiers never reach the graph, so they cannot reach a picture.

>>> from kyc.graph.rings import Ring, SharedIdentifier
>>> members = tuple(f"applicant:{i:032x}" for i in range(3))
>>> dev = SharedIdentifier("device:" + "ab" * 16, "device", ("device",), 3, False, members)
>>> ring = Ring("ring:0011223344556677", members, 3, 3, 1.2, 1.0, 1.0, ("device",), (dev,),
...             3, 0, 3, 0, 60, 60, 3, 3, 0.0, 0, 0, 0, 0.6, True, ())
>>> svg = ring_svg(ring)
>>> svg.startswith("<svg") and "device:abab" in svg and "ab" * 16 not in svg
True
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Final

from kyc.errors import ConfigError
from kyc.graph.rings import Ring

__all__ = ["KIND_COLOURS", "render_ring", "ring_html", "ring_png", "ring_svg", "short_token"]

#: Colour of each identifier kind (edges and identifier nodes).
KIND_COLOURS: Final = {
    "device": "#d62728",
    "card": "#9467bd",
    "phone": "#1f77b4",
    "email": "#2ca02c",
    "ip": "#ff7f0e",
    "address": "#8c564b",
    "applicant": "#7f7f7f",
}
_OTHER = "#555555"
_ROW = 22
_TOP = 80
_LEFT_X = 190
_RIGHT_X = 610
_WIDTH = 860


def short_token(token: str, hex_chars: int = 6) -> str:
    """``"device:3fa2c1..."`` -> ``"device:3fa2c1"``; applicant tokens keep only the hex.

    >>> short_token("applicant:0123456789abcdef0123456789abcdef")
    '012345'
    """
    kind, _, digest = token.partition(":")
    if kind == "applicant":
        return digest[:hex_chars]
    return f"{kind}:{digest[:hex_chars]}"


def _codes(ring: Ring, limit: int = 110) -> str:
    text = "  ".join(r.code for r in ring.reasons) or "no evidence"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _layout(ring: Ring) -> tuple[dict[str, float], dict[str, float], int]:
    ids = sorted(ring.shared, key=lambda s: (s.kind, -s.members, s.token))
    # members ordered by the mean position of the identifiers they hold (fewer crossings)
    pos: dict[str, list[int]] = {m: [] for m in ring.members}
    for k, s in enumerate(ids):
        for m in s.holders:
            if m in pos:
                pos[m].append(k)
    members = sorted(ring.members,
                     key=lambda m: (sum(pos[m]) / len(pos[m]) if pos[m] else len(ids), m))
    n = max(len(members), len(ids), 1)
    height = _TOP + n * _ROW + 40
    def ys(count: int) -> list[float]:
        span = (n - 1) * _ROW
        if count <= 1:
            return [_TOP + span / 2]
        step = span / (count - 1)
        return [_TOP + i * step for i in range(count)]
    my = dict(zip(members, ys(len(members)), strict=True))
    iy = dict(zip([s.token for s in ids], ys(len(ids)), strict=True))
    return my, iy, height


def ring_svg(ring: Ring) -> str:
    """An SVG drawing of the ring (members, shared identifiers, edges coloured by kind)."""
    my, iy, height = _layout(ring)
    esc = html.escape
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="12">',
        f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="16" y="24" font-size="16" font-weight="bold">{esc(ring.ring_id)}'
        f' - {ring.size} members, score {ring.score:.2f}'
        f'{" (flagged)" if ring.flagged else ""}</text>',
        f'<text x="16" y="42" fill="#b00020">{esc(_codes(ring))}</text>',
        f'<text x="{_LEFT_X}" y="58" text-anchor="end" fill="#333">applicants</text>',
        f'<text x="{_RIGHT_X}" y="58" fill="#333">shared identifiers (members)</text>',
    ]
    for s in ring.shared:
        colour = KIND_COLOURS.get(s.kind, _OTHER)
        dash = ' stroke-dasharray="5,4"' if s.hub else ""
        y2 = iy[s.token]
        for m in s.holders:
            y1 = my.get(m)
            if y1 is None:
                continue
            out.append(
                f'<line x1="{_LEFT_X + 8}" y1="{y1:.1f}" x2="{_RIGHT_X - 8}" y2="{y2:.1f}" '
                f'stroke="{colour}" stroke-opacity="0.55" stroke-width="1.4"{dash}/>'
            )
    for m, y in my.items():
        out.append(f'<circle cx="{_LEFT_X}" cy="{y:.1f}" r="6" fill="#444"/>')
        out.append(f'<text x="{_LEFT_X - 12}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{esc(short_token(m))}</text>')
    for s in ring.shared:
        y = iy[s.token]
        colour = KIND_COLOURS.get(s.kind, _OTHER)
        dash = ' stroke-dasharray="3,2"' if s.hub else ""
        label = f"{short_token(s.token)} ({s.members}){' hub' if s.hub else ''}"
        out.append(f'<rect x="{_RIGHT_X - 7}" y="{y - 7:.1f}" width="14" height="14" '
                   f'fill="{colour}" stroke="#000" stroke-width="0.8"{dash}/>')
        out.append(f'<text x="{_RIGHT_X + 14}" y="{y + 4:.1f}">{esc(label)}</text>')
    lx = 16
    ly = height - 14
    for kind in sorted({s.kind for s in ring.shared}):
        colour = KIND_COLOURS.get(kind, _OTHER)
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{esc(kind)}</text>')
        lx += 24 + 8 * len(kind)
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin-bottom: 4px; }
.meta { color: #555; margin-bottom: 16px; }
table { border-collapse: collapse; margin: 12px 0 24px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 13px; }
th { background: #f2f2f2; }
code { font-size: 12px; }
.flag { color: #b00020; font-weight: bold; }
"""


def ring_html(ring: Ring, *, title: str | None = None) -> str:
    """A self-contained HTML page: the ring picture, its reasons and shared identifiers.

    No script, no external stylesheet or font: it opens offline and can be attached to a case.
    """
    esc = html.escape
    head = title or f"Ring {ring.ring_id}"
    status = '<span class="flag">flagged</span>' if ring.flagged else "not flagged"
    rows = "\n".join(
        f"<tr><td><code>{esc(r.code)}</code></td><td>{esc(r.message)}</td>"
        f"<td><code>{esc(_evidence_text(r.evidence))}</code></td></tr>"
        for r in ring.reasons
    ) or '<tr><td colspan="3">no evidence</td></tr>'
    shared = "\n".join(
        f"<tr><td><code>{esc(short_token(s.token, 12))}</code></td><td>{esc(s.kind)}</td>"
        f"<td>{esc(', '.join(s.roles))}</td><td>{s.members}</td>"
        f"<td>{'yes' if s.hub else ''}</td></tr>"
        for s in ring.shared
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(head)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{esc(head)}</h1>\n"
        f'<div class="meta">{ring.size} members (component of {ring.component_size}), '
        f"score {ring.score:.3f}, {status}; FRAUDAR density {ring.density:.3f} "
        f"(top {ring.density_top_pct:g} %), burst {ring.burst} members in the short window, "
        f"{ring.burst_long} in the long one, span {ring.span_s // 3600} h, thin-file share "
        f"{ring.thin_file_share:.0%}. Tokens are keyed hashes, shortened.</div>\n"
        f"{ring_svg(ring)}\n"
        "<h2>Reasons</h2>\n<table><tr><th>code</th><th>meaning</th><th>evidence</th></tr>\n"
        f"{rows}\n</table>\n"
        "<h2>Shared identifiers</h2>\n<table><tr><th>token</th><th>kind</th><th>roles</th>"
        f"<th>members</th><th>hub</th></tr>\n{shared}\n</table>\n</body></html>\n"
    )


def _evidence_text(evidence: object) -> str:
    if not isinstance(evidence, dict):
        return str(evidence)
    parts = []
    for k, v in evidence.items():
        if isinstance(v, str) and ":" in v:
            v = short_token(v, 12)
        elif isinstance(v, list | tuple):
            v = [short_token(x, 12) if isinstance(x, str) and ":" in x else x for x in v]
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def ring_png(ring: Ring, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Draw the ring to a PNG file with matplotlib; returns the path.

    Raises :class:`~kyc.errors.ConfigError` when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        raise ConfigError("PNG pictures need matplotlib: pip install 'kyc[plot]' "
                          "(or write .html, which needs nothing)") from None
    my, iy, height = _layout(ring)
    fig = Figure(figsize=(_WIDTH / 100, height / 100), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, _WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(16, 24, f"{ring.ring_id} - {ring.size} members, score {ring.score:.2f}"
            f"{' (flagged)' if ring.flagged else ''}", fontsize=11, fontweight="bold",
            va="center")
    ax.text(16, 42, _codes(ring), va="center", fontsize=8, color="#b00020")
    ax.text(_LEFT_X, 58, "applicants", ha="right", va="center", fontsize=8, color="#333")
    ax.text(_RIGHT_X, 58, "shared identifiers (members)", va="center", fontsize=8,
            color="#333")
    for s in ring.shared:
        colour = KIND_COLOURS.get(s.kind, _OTHER)
        y2 = iy[s.token]
        for m in s.holders:
            y1 = my.get(m)
            if y1 is None:
                continue
            ax.plot([_LEFT_X + 8, _RIGHT_X - 8], [y1, y2], color=colour, alpha=0.55,
                    linewidth=0.9, linestyle="--" if s.hub else "-")
    for m, y in my.items():
        ax.scatter([_LEFT_X], [y], s=28, color="#444", zorder=3)
        ax.text(_LEFT_X - 12, y, short_token(m), ha="right", va="center", fontsize=7,
                family="monospace")
    for s in ring.shared:
        y = iy[s.token]
        colour = KIND_COLOURS.get(s.kind, _OTHER)
        ax.scatter([_RIGHT_X], [y], s=60, marker="s", color=colour, edgecolors="black",
                   linewidths=0.6, zorder=3)
        ax.text(_RIGHT_X + 14, y, f"{short_token(s.token)} ({s.members})"
                f"{' hub' if s.hub else ''}", va="center", fontsize=7, family="monospace")
    kinds = sorted({s.kind for s in ring.shared})
    if kinds:
        handles = [Line2D([0], [0], color=KIND_COLOURS.get(k, _OTHER), lw=3) for k in kinds]
        ax.legend(handles, kinds, loc="lower left", fontsize=7, frameon=False,
                  ncol=len(kinds))
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    os.replace(tmp, out)
    return out


def render_ring(ring: Ring, path: str | os.PathLike[str]) -> Path:
    """Write the ring picture to ``path``: ``.html``/``.htm``, ``.svg`` or ``.png``.

    Raises :class:`~kyc.errors.ConfigError` for another extension (or PNG without
    matplotlib).
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix == ".png":
        return ring_png(ring, out)
    if suffix in (".html", ".htm"):
        text = ring_html(ring)
    elif suffix == ".svg":
        text = ring_svg(ring)
    else:
        raise ConfigError(f"unknown picture type {out.suffix!r}: use .html, .svg or .png")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
