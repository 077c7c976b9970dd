"""`pyembed report`: one self-contained HTML page about the platform's state and history.

Charts (matplotlib, embedded as PNG data URIs, so the file opens anywhere offline): retrieval
metrics by version, training loss curves, recall against latency of the index settings; tables:
collections and their queues, workers, deployments.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pyembed import errors, extras
from pyembed.db import database, queries


def write(db: database.Database, out: Path, collection: str | None = None) -> Path:
    """Write the report of all collections (or one) to ``out``."""
    with db.session() as conn:
        data = {
            name: _rows(conn, name, collection)
            for name in (
                "report_collections",
                "report_metrics",
                "report_training",
                "report_tuning",
                "report_workers",
                "report_deployments",
            )
        }
    if collection is not None and not data["report_collections"]:
        raise errors.CollectionError(f"collection {collection!r} does not exist")
    sections = [
        _section("Collections and their queues", _table(data["report_collections"])),
        _section(
            "Retrieval metrics by version",
            _metrics_chart(data["report_metrics"]) + _table(data["report_metrics"]),
        ),
        _section("Training loss", _loss_chart(data["report_training"])),
        _section("Index settings: recall against latency", _tuning_chart(data["report_tuning"])),
        _section("Workers", _table(data["report_workers"])),
        _section("Deployments", _table(data["report_deployments"])),
    ]
    title = f"pyembed report{f': {collection}' if collection else ''}"
    when = dt.datetime.now(dt.UTC).isoformat(" ", "seconds")
    page = _PAGE.format(title=html.escape(title), when=when, body="\n".join(sections))
    out.write_text(page, encoding="utf-8")
    return out


def _rows(conn: psycopg.Connection, query: str, collection: str | None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get(query), {"collection": collection})
        return cur.fetchall()


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>\n{body}</section>"


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">nothing recorded yet</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _figure(draw: Any) -> str:
    with extras.needed("report"):
        import matplotlib

        matplotlib.use("Agg")  # no display: draw to memory
        from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="chart" src="data:image/png;base64,{data}">'


def _metrics_chart(rows: list[dict[str, Any]]) -> str:
    wanted = [r for r in rows if r["label"] == "ndcg@10"]
    if not wanted:
        return '<p class="empty">no retrieval evaluation yet (pyembed eval COLLECTION)</p>'

    def draw(ax: Any) -> None:
        labels = [f"{r['model_version']}, {r['eval_set']} ({r['mode']})" for r in wanted]
        ax.barh(labels, [r["value"] for r in wanted], color="#4477aa")
        ax.set_xlabel("NDCG@10")
        ax.set_xlim(0, 1)

    return _figure(draw)


def _loss_chart(rows: list[dict[str, Any]]) -> str:
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        if row["loss"] is not None:
            curves[f"run {row['run_id']} ({row['collection']}, {row['loss_name']})"].append(
                (row["step"], row["loss"])
            )
    if not curves:
        return '<p class="empty">no training run yet (pyembed train COLLECTION)</p>'

    def draw(ax: Any) -> None:
        for name, points in curves.items():
            ax.plot(*zip(*points, strict=True), marker=".", label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)

    return _figure(draw)


def _tuning_chart(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">no tuning yet (pyembed index tune COLLECTION)</p>'

    def draw(ax: Any) -> None:
        for row in rows:
            curve = row["tuning"]
            setting = next(k for k in curve[0] if k not in ("recall_at_10", "p50_ms", "qps"))
            ax.plot(
                [p["p50_ms"] for p in curve],
                [p["recall_at_10"] for p in curve],
                marker="o",
                label=f"{row['index_name']} ({setting})",
            )
            for point in curve:
                ax.annotate(
                    str(point[setting]), (point["p50_ms"], point["recall_at_10"]), fontsize=7
                )
        ax.set_xlabel("p50 latency, ms")
        ax.set_ylabel("recall@10")
        ax.legend(fontsize=8)

    return _figure(draw)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222 }}
table {{ border-collapse: collapse; margin: .5em 0; font-size: 12px }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top }}
th {{ background: #eef }} .empty {{ color: #888 }} img {{ max-width: 100% }}
</style></head>
<body><h1>{title}</h1><p>Written {when}.</p>
{body}
<script>
// Lets a headless browser check that every chart decoded.
window.addEventListener("load", () => document.body.setAttribute("data-images-loaded",
  String([...document.images].every((i) => i.complete && i.naturalWidth > 0))));
</script>
</body></html>
"""
