"""The tour's report: one self-contained HTML page from the tour's record and its executed notebooks.

Figures are the PNG outputs of the notebook cells tagged ``report`` (embedded as base64, so the page
needs no other file); the morphometrics table is notebook 05's CSV; the rest is the record that
:func:`vemkit.tour.tour` also writes to ``tour.json``.

Not for: running anything (:mod:`vemkit.tour` does).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

__all__ = ["headline", "key_figures", "write_report"]

REPORT_TAG = "report"
# morphometrics columns shown in the report (those present), largest objects first
_TABLE_COLUMNS = ("label", "volume_um3", "surface_area_nm2", "sphericity", "equivalent_diameter_nm", "elongation",
                  "skeleton_length_nm", "n_branches", "n_sections", "touches_border", "distance_to_membranes_nm")
_MAX_ROWS = 500

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2327; margin: 0;
       background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { margin: 0 0 4px; font-size: 28px; } h2 { margin-top: 36px; border-bottom: 2px solid #e3e6ea; padding-bottom: 4px; }
h3 { margin: 22px 0 8px; }
.sub { color: #5b6670; margin: 0 0 16px; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 12px 0; }
.ok { background: #e7f5ea; border: 1px solid #9fd3a9; } .bad { background: #fdeaea; border: 1px solid #eea3a3; }
.warn { background: #fff5db; border: 1px solid #f0cf74; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #dde1e5; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; flex: 1 1 460px; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { font-size: 12px; color: #5b6670; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.scroll { max-height: 560px; overflow: auto; border: 1px solid #e3e6ea; }
details { margin: 6px 0; } summary { cursor: pointer; color: #24527a; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _heading(markdown: str) -> str | None:
    for line in markdown.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return None


def key_figures(notebook) -> list[tuple[str, str]]:
    """The key figures of an executed notebook: ``(caption, base64 PNG)`` pairs.

    The last PNG output of each cell tagged ``report``, captioned with the section heading above it; a
    notebook with no tagged figure gives its last PNG.

    Examples
    --------
    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## 2 · Look"),
    ...     nbformat.v4.new_code_cell("fig", metadata={"tags": ["report"]}, outputs=[
    ...         nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})])])
    >>> key_figures(nb)
    [('2 · Look', 'iVBORw0KGgo=')]
    """
    import nbformat

    nb = notebook if hasattr(notebook, "cells") else nbformat.read(notebook, as_version=4)
    heading, tagged, last = None, [], []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = _heading(cell.source) or heading
            continue
        if cell.cell_type != "code":
            continue
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        if not pngs:
            continue
        item = (heading or "", "".join(pngs[-1].split()))  # a live plot's last frame, not every frame
        last = [item]
        if REPORT_TAG in cell.metadata.get("tags", []):
            tagged.append(item)
    return tagged or last


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def _rel(value, out: str):
    if isinstance(value, str) and out and value.startswith(out.rstrip("/") + "/"):
        return value[len(out.rstrip("/")) + 1:]
    return value


def _flatten(d, prefix="") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and len(json.dumps(v, default=str)) > 80:
            rows.extend(_flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows


def _value_cell(value, out) -> str:
    value = _rel(value, out)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        text = text if len(text) <= 240 else text[:237] + "..."
        return f'<td class="mono">{_e(text)}</td>'
    cls = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td{cls}>{_e(_fmt(value))}</td>"


def _table(rows, header=None, attrs="") -> str:
    parts = [f"<table{attrs}>"]
    if header:
        parts.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(cell if str(cell).startswith("<td") else f"<td>{_e(cell)}</td>"
                                      for cell in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def headline(stem: str, m: dict | None) -> str:
    """One line of what a notebook found, from its ``metrics.json`` ("" when it has nothing to say).

    Examples
    --------
    >>> headline("02_annotate", {"annotated_sections": [0, 3], "iou_unannotated_sections": 0.3512})
    'random forest on strokes in sections [0, 3]: IoU 0.351 on the sections nobody annotated'
    """
    if not m:
        return ""
    try:
        if stem == "01_load_and_explore" and m.get("iou"):
            best = max(m["iou"], key=m["iou"].get)
            return (f"best classic method: {best}, IoU {m['iou'][best]:.3f}; best possible threshold "
                    f"IoU {m['best_oracle_threshold_iou']:.3f}")
        if stem == "02_annotate" and m.get("iou_unannotated_sections") is not None:
            return (f"random forest on strokes in sections {m['annotated_sections']}: IoU {m['iou_unannotated_sections']:.3f} "
                    "on the sections nobody annotated")
        if stem == "03_transfer_learning":
            return "; ".join(f"{k}: IoU {v['iou']:.3f}" for k, v in m["results"].items()) + \
                f" ({m['iterations']} iterations)"
        if stem == "04_gpu_inference":
            iou = f"IoU {m['iou']:.3f}; " if m.get("iou") is not None else ""
            return (f"{iou}{m['voxels_per_second'] / 1e6:.2f} million voxels/s on {m['device']} "
                    f"({m['blocks']} blocks, halo {m['halo']})")
        if stem == "05_quantify":
            sc = m.get("instance_scores") or {}
            ap = (sc.get("ap") or {}).get("0.5")
            med = m.get("median_volume_um3")
            if ap is not None and sc.get("tp"):
                score = f"; AP@0.5 {ap:.2f}"
            elif ap is not None:  # nothing matched: say why instead of a bare 0.00
                score = (f"; none of the {sc.get('n_pred', '?')} objects matches one of the {sc.get('n_truth', '?')} "
                         "true mitochondria at IoU 0.5 (the mask from notebook 04 is too rough to count objects)")
            else:
                score = ""
            return (f"{m['n_instances']} mitochondria measured" + (f", median volume {med:.4f} µm³" if med else "")
                    + score)
    except (KeyError, TypeError, ValueError):
        return ""
    return ""


def _morphometrics(record: dict) -> str:
    import pandas as pd

    step = next((s for s in record["steps"] if s["notebook"] == "05_quantify"), None)
    csv = (step or {}).get("metrics") and step["metrics"].get("table_csv")
    if not csv or not Path(csv).is_file():
        return '<p>No table: notebook 05 did not run to the end.</p>'
    table = pd.read_csv(csv)
    cols = [c for c in _TABLE_COLUMNS if c in table]
    if "volume_um3" in table:
        table = table.sort_values("volume_um3", ascending=False)
    shown = table[cols].head(_MAX_ROWS)
    rows = [[_value_cell(v.item() if hasattr(v, "item") else v, "") for v in row] for row in shown.itertuples(index=False)]
    note = (f"{len(table)} objects, {len(table.columns)} columns in <code>{_e(_rel(csv, record['out']))}</code> "
            f"(also Parquet); largest first")
    if len(table) > _MAX_ROWS:
        note += f", the {_MAX_ROWS} largest shown"
    units = ("Units from the voxel size: volume in µm³, lengths and distances in nm, surface area in nm²; "
             "<code>touches_border</code> marks objects cut by the crop's border (partly measured).")
    return (f"<p>{note}. {units}</p><div class=\"scroll\">"
            + _table(rows, cols, ' id="morphometrics"') + "</div>")


def _files_table(files) -> str:
    rows = [[f["path"], f'<td class="num">{_e(f.get("size") or "")}</td>', f'<td class="mono">{_e(f["sha256"])}</td>']
            for f in files]
    return _table(rows, ["file", "bytes", "SHA-256"])


def write_report(record: dict, path) -> Path:
    """Write the tour's report, one self-contained HTML file, and return its path.

    Parameters
    ----------
    record : dict
        The tour's record (see :func:`vemkit.tour.tour`; ``tour.json`` holds the same).
    path : str or Path
        Where to write it (e.g. ``OUT/report.html``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> record = {"status": "failed", "quick": True, "out": "", "started": "today", "seconds": 1.0,
    ...           "dataset": {"name": "synthetic", "fallback": None, "files": []},
    ...           "device": {"resolved": "cpu", "name": "CPU"}, "machine": {"cpu_count": 2}, "versions": {},
    ...           "steps": [{"notebook": "01_load_and_explore", "title": "01", "status": "failed",
    ...                      "error": "ValueError: no data", "seconds": 1.0}]}
    >>> page = write_report(record, pathlib.Path(tempfile.mkdtemp()) / "report.html").read_text()
    >>> "Not complete. 01_load_and_explore failed: ValueError: no data" in page
    True
    """
    path = Path(path)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vemkit tour report</title>"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{_CSS}</style></head>"
             "<body><main>"]
    parts += _summary_section(record)
    parts += _steps_section(record)
    parts += _figures_section(record["steps"])
    parts.append("<h2>Morphometrics: every mitochondrion measured</h2>")
    parts.append(_morphometrics(record))
    parts += _metrics_section(record)
    parts += _provenance_section(record)
    parts.append("<p class=\"sub\">Written by <code>vemkit tour</code>; the same record is in "
                 "<code>tour.json</code>.</p></main></body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _summary_section(record: dict) -> list[str]:
    """Title, what ran where, and the status banners."""
    data, device, steps = record["dataset"], record["device"], record["steps"]
    total = record.get("seconds")
    parts = ["<h1>vemkit tour report</h1>"]
    parts.append(f"<p class=\"sub\">{'quick' if record.get('quick') else 'full'} tour on <b>{_e(data['name'])}</b>, "
                 f"device {_e(device['resolved'])} ({_e(device.get('name'))}), "
                 f"{_e(record.get('started'))}" + (f", {total / 60:.1f} min in all" if total else "") + "</p>")
    if record["status"] == "complete":
        parts.append('<div class="banner ok" id="status">Complete: all five notebooks ran.</div>')
    else:
        bad = next((s for s in steps if s["status"] in ("failed", "interrupted")), None)
        msg = f"{bad['notebook']} {bad['status']}: {bad.get('error', '')}" if bad else record["status"]
        parts.append(f'<div class="banner bad" id="status">Not complete. {_e(msg)}</div>')
    if data.get("fallback"):
        parts.append(f'<div class="banner warn" id="fallback">Synthetic phantom, not real data: {_e(data["fallback"])}</div>')
    return parts


def _steps_section(record: dict) -> list[str]:
    """The table of steps: status, time, load, memory and what each found."""
    steps, total = record["steps"], record.get("seconds")
    parts = ["<h2>Steps</h2>"]
    has_load = any(s.get("load_average") for s in steps)
    has_rss = any(s.get("peak_rss_gib") is not None for s in steps)
    rows = []
    for i, s in enumerate(steps, 1):
        link = (f'<td><a href="notebooks/{_e(s["notebook"])}.ipynb">{_e(s["notebook"])}.ipynb</a></td>'
                if s.get("executed") else f"<td>{_e(s['notebook'])}</td>")
        secs = f"{s['seconds']:.1f}" if s.get("seconds") is not None else ""
        row = [str(i), link, s["status"], f'<td class="num">{secs}</td>']
        if has_load:
            load = " / ".join(f"{v:.1f}" for v in s["load_average"]) if s.get("load_average") else ""
            row.append(f'<td class="num">{load}</td>')
        if has_rss:
            rss = f"{s['peak_rss_gib']:.2f}" if s.get("peak_rss_gib") is not None else ""
            row.append(f'<td class="num">{rss}</td>')
        rows.append([*row, headline(s["notebook"], s.get("metrics"))])
    header = ["#", "executed notebook", "status", "time (s)"]
    header += ["load at the end (1/5/15 min)"] if has_load else []
    header += ["peak memory so far (GiB)"] if has_rss else []
    parts.append(_table(rows, [*header, "what it found"], ' id="steps"'))
    if total:
        parts.append(f"<p>Total wall time {total:.1f} s, kernel start-up included. The load average says how "
                     f"busy the machine was ({record['machine'].get('cpu_count')} cores): above the core count, "
                     "other work shared the CPU and the times are longer than on an idle machine. Peak memory "
                     "is that of the largest notebook kernel (or process it started) up to that step.</p>")
    return parts


def _figures_section(steps: list) -> list[str]:
    """The key figures of every executed notebook, embedded."""
    parts = ["<h2>Key figures</h2>"]
    for s in steps:
        if not s.get("executed") or not Path(s["executed"]).is_file():
            continue
        figs = key_figures(s["executed"])
        if not figs:
            continue
        parts.append(f'<h3>{_e(s["title"])}</h3><div class="figs">')
        for caption, png in figs:
            parts.append(f'<figure><img alt="{_e(s["notebook"])}: {_e(caption)}" src="data:image/png;base64,{png}">'
                         f"<figcaption>{_e(s['notebook'])} · {_e(caption)}</figcaption></figure>")
        parts.append("</div>")
    return parts


def _metrics_section(record: dict) -> list[str]:
    """Each notebook's ``metrics.json``, flattened."""
    out = record.get("out", "")
    parts = ["<h2>Metrics</h2><p>Each notebook's <code>metrics.json</code>; paths relative to the tour's folder.</p>"]
    for s in record["steps"]:
        if s.get("metrics"):
            rows = [[k, _value_cell(v, out)] for k, v in _flatten(s["metrics"])]
            parts.append(f"<h3>{_e(s['title'])}</h3>" + _table(rows, ["key", "value"]))
    return parts


def _provenance_section(record: dict) -> list[str]:
    """How, where and on what the tour ran: command, device, versions, data, models, parameters."""
    out, data, device = record.get("out", ""), record["dataset"], record["device"]
    parts = ["<h2>Provenance</h2>"]
    parts.append("<h3>Run</h3>" + _table([
        ["command", f'<td class="mono">{_e(record.get("command") or "vemkit.tour.tour(...)")}</td>'],
        ["started", record.get("started")], ["finished", record.get("finished", "")],
        ["output folder", record.get("out")], ["notebooks", record.get("notebooks_dir")],
        *[[f"vemkit source: {k}", v] for k, v in record.get("source", {}).items()],
    ]))
    parts.append("<h3>Device and machine</h3>" + _table(
        [[f"device: {k}", v] for k, v in device.items()] + [[f"machine: {k}", v] for k, v in record["machine"].items()]))
    parts.append("<h3>Versions</h3>" + _table([[k, v or "not installed"] for k, v in record["versions"].items()],
                                              ["package", "version"], ' id="versions"'))
    parts += _data_section(data)
    if record.get("models"):
        parts.append("<h3>Models</h3>")
        for m in record["models"]:
            parts.append(f"<p>{_e(m['role'])}: <code>{_e(_rel(m['name'], out))}</code></p>" + _files_table(m["files"]))
    parts.append("<h3>Parameters of each notebook</h3>")
    for s in record["steps"]:
        if s.get("parameters"):
            rows = [[k, _value_cell(v, out)] for k, v in s["parameters"].items()]
            parts.append(f"<details><summary>{_e(s['notebook'])}</summary>" + _table(rows) + "</details>")
    return parts


def _data_section(data: dict) -> list[str]:
    """The dataset's facts and every file used with its SHA-256."""
    parts = ["<h3>Data</h3>"]
    if data["name"] == "synthetic":
        parts.append("<p>The synthetic phantom of <code>vemkit.synthetic.make_phantom</code> (seed 0): generated, "
                     "no files.</p>")
        return parts
    facts = [[k, data.get(k)] for k in ("name", "volume", "title", "modality", "voxel_size_nm", "licence",
                                        "citation", "folder", "verified")]
    src = data.get("source") or {}
    facts += [[f"source {k}", v] for k, v in src.items()]
    facts.append(["SHA-256 of the file list", f'<td class="mono">{_e(data["files_sha256"])}</td>'])
    parts.append(_table(facts, attrs=' id="dataset"'))
    parts.append(f"<details><summary>the {len(data['files'])} files used, each with its SHA-256</summary>"
                 + _files_table(data["files"]) + "</details>")
    return parts
