"""HTML building blocks and the page template of the report.

The page is self-contained: CSS and a few lines of JavaScript (sortable tables) are inline,
images are ``data:`` URIs, nothing is fetched from the network. Every value coming from the
data (column names, category values, errors) is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A short human form: numbers with ``digits`` significant digits, NaN/None as empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.{digits}g}"
        return f"{v:,.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}g}"
    return str(value)


def percent(value: float, digits: int = 1) -> Cell:
    """A share shown as a percentage, sorted by its value."""
    if value is None or not math.isfinite(float(value)):
        return Cell("")
    return Cell(f"{100 * float(value):.{digits}f}%", sort=repr(float(value)), cls="num")


def _sort_key(value: Any) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        v = float(value)
        return "" if math.isnan(v) else repr(v)
    return ""


@dataclass(frozen=True)
class Cell:
    """A table cell whose HTML is already built (``html``) with an optional sort key."""

    html: str
    sort: str = ""
    cls: str = ""


def table(
    frame: pd.DataFrame,
    *,
    table_id: str | None = None,
    sortable: bool = False,
    row_classes: Sequence[str] | None = None,
    caption: str | None = None,
) -> str:
    """An HTML table of ``frame``; numeric cells carry ``data-v`` (their exact value) for sorting."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = []
        for v in row:
            if isinstance(v, Cell):
                attrs = (f' class="{esc(v.cls)}"' if v.cls else "") + (
                    f' data-v="{esc(v.sort)}"' if v.sort else ""
                )
                cells.append(f"<td{attrs}>{v.html}</td>")
                continue
            key = _sort_key(v)
            num = ' class="num"' if key else ""
            data = f' data-v="{key}"' if key else ""
            cells.append(f"<td{num}{data}>{esc(fmt(v))}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    attrs = (f' id="{esc(table_id)}"' if table_id else "") + (' class="sortable"' if sortable else "")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table{attrs}>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column definition table (label, value); values are escaped unless they are Cells."""
    rows = []
    for k, v in pairs:
        if v is None or v == "":
            continue
        val = v.html if isinstance(v, Cell) else esc(fmt(v))
        rows.append(f"<tr><th>{esc(k)}</th><td>{val}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>'


def img(uri: str, alt: str, *, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{esc(alt)}" src="{uri}">'


def figures(*items: str) -> str:
    return f'<div class="figs">{"".join(items)}</div>'


def note(text: str, *, kind: str = "note") -> str:
    return f'<p class="{kind}">{esc(text)}</p>'


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def score_cards(scores: dict[str, Any]) -> str:
    cards = "".join(
        f'<div class="card"><div class="v">{esc(fmt(v))}</div><div class="k">{esc(k)}</div></div>'
        for k, v in scores.items()
    )
    return f'<div class="cards">{cards}</div>'


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#f6f7f9}
header{background:#24303f;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d3df}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde1e6;padding:8px 32px;z-index:2}
nav a{margin-right:16px;color:#24548f;text-decoration:none;font-weight:500}
main{padding:8px 32px 48px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px 20px 18px;margin:16px 0}
h2{font-size:18px;margin:6px 0 12px}h3{font-size:15px;margin:16px 0 8px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 10px}
th,td{border-bottom:1px solid #e6e8eb;padding:4px 9px;text-align:left;vertical-align:top}
thead th{background:#f0f2f5}#leaderboard td{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e2e7ee}
th.asc:after{content:" \\25B2";font-size:9px}th.desc:after{content:" \\25BC";font-size:9px}
tr.chosen td{background:#e8f4ea;font-weight:600}tr.failed td{color:#a33}tr.stopped td{color:#666}
table.kv th{background:none;width:220px;color:#555;font-weight:500;position:static}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
img.plot{border:1px solid #e6e8eb;border-radius:4px;max-width:100%}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 12px}
.card{border:1px solid #dde1e6;border-radius:6px;padding:8px 14px;min-width:90px;background:#fafbfc}
.card .v{font-size:19px;font-weight:600}.card .k{color:#666;font-size:12px}
p.note{color:#555}p.warn{background:#fff6e0;border-left:4px solid #e6a700;padding:6px 10px}
p.error{background:#fdecec;border-left:4px solid #c33;padding:6px 10px}
.scroll{overflow-x:auto}td.params{max-width:360px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
a.dl{margin-right:12px}
"""

#: sorts a table.sortable by the clicked column: numbers by data-v, text otherwise; click again to reverse
JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('thead th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i],y=b.cells[i],xv=x.getAttribute('data-v'),yv=y.getAttribute('data-v');
        if(xv!==null&&yv===null){return -1;}
        if(xv===null&&yv!==null){return 1;}
        var c=(xv!==null)?parseFloat(xv)-parseFloat(yv):x.textContent.localeCompare(y.textContent);
        return asc?c:-c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document; ``sections`` are ``(id, title, body_html)``."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(t)}</a>' for sid, t, _ in sections)
    body = "".join(section(sid, t, b) for sid, t, b in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main><script>{JS}</script></body></html>"
    )
