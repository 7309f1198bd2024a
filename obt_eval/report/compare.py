"""Compare encoders on one corpus from their search results: a table and two plots, all traceable.

Inputs are ``reports/search/<corpus>/<encoder>/results.json`` (written by `obt_eval.search`).
Outputs in ``reports/compare/<corpus>/``: ``table.md``, ``table.csv``, ``table.html`` (a summary row
per encoder, then every (encoder, layer, k) row), ``abx_by_layer.png``, ``pnmi_vs_k.png`` and
``sources.json``, which lists for each figure the result files and the feature/units artifacts
(paths + sidecar hashes) its numbers came from.
"""

from __future__ import annotations

import hashlib
import html
import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from obt_eval.atomic import atomic_path, read_json, write_json, write_text
from obt_eval.errors import NotFoundError
from obt_eval.workspace import Workspace, safe_name

METRIC_COLUMNS = [
    "abx_within", "abx_across", "abx_gap", "pnmi", "shuffled_pnmi", "phone_purity", "cluster_purity",
    "silhouette_phones", "silhouette_units", "unit_abx_within", "bitrate", "bitrate_dedup", "heldout_inertia",
]


@dataclass
class CompareResult:
    out_dir: Path
    table: pd.DataFrame
    summary: pd.DataFrame
    files: dict[str, str]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_search_results(workspace: Workspace, corpus: str, encoders: list[str] | None = None) -> pd.DataFrame:
    root = workspace.root / "reports" / "search" / safe_name(corpus)
    files = sorted(root.glob("*/results.json")) if root.exists() else []
    if encoders:
        wanted = {safe_name(e) for e in encoders}
        missing = wanted - {f.parent.name for f in files}
        if missing:
            raise NotFoundError(
                f"no search results for {sorted(missing)} on corpus {corpus!r}",
                f"run `obt-eval search --corpus {corpus} --encoder NAME --layers A-B --k 100` for each first",
            )
        files = [f for f in files if f.parent.name in wanted]
    if not files:
        raise NotFoundError(
            f"no search results for corpus {corpus!r} under {root}",
            f"run `obt-eval search --corpus {corpus} --encoder NAME ...` first",
        )
    frames = []
    for f in files:
        res = read_json(f)
        rows = pd.DataFrame(res["rows"])
        rows["encoder"] = res["encoder"]
        rows["results_file"] = str(f)
        rows["results_hash"] = _file_hash(f)
        rows["best_layer"] = res.get("best_layer")
        frames.append(rows)
    table = pd.concat(frames, ignore_index=True)
    for col in METRIC_COLUMNS:
        if col not in table:
            table[col] = float("nan")
    return table


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """One row per encoder: its best layer (lowest ABX within, else best PNMI) and that layer's numbers."""
    rows = []
    for enc, group in table.groupby("encoder", sort=True):
        g = group.copy()
        if g["abx_within"].notna().any():
            best = g.loc[g["abx_within"].idxmin()]
            rule = "lowest ABX within"
        elif g["pnmi"].notna().any():
            best = g.loc[g["pnmi"].idxmax()]
            rule = "highest PNMI"
        else:
            best = g.iloc[0]
            rule = "only row"
        at_layer = g[g["layer"].map(_layer_text) == _layer_text(best["layer"])]
        best_k = at_layer.loc[at_layer["pnmi"].idxmax()] if at_layer["pnmi"].notna().any() else best
        rows.append({
            "encoder": enc, "best_layer": _layer_text(best["layer"]), "chosen_by": rule,
            "abx_within": best["abx_within"], "abx_across": best["abx_across"], "abx_gap": best["abx_gap"],
            "abx_context": best.get("abx_within_context"),
            "best_k": int(best_k["k"]), "pnmi": best_k["pnmi"], "shuffled_pnmi": best_k["shuffled_pnmi"],
            "silhouette_units": best_k["silhouette_units"], "bitrate_dedup": best_k["bitrate_dedup"],
            "units": best_k.get("units"), "units_hash": best_k.get("units_hash"),
        })
    return pd.DataFrame(rows)


def _layer_text(layer) -> str:
    return "-" if layer is None or (isinstance(layer, float) and math.isnan(layer)) else str(int(layer))


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _relative_href(target: str, page_dir: Path) -> str:
    """A link from the page's folder to `target`, relative, so it works wherever the workspace is opened
    or moved to (``file://`` + a relative path makes the first folder a host name: a broken link)."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))
    return quote(Path(rel).as_posix())


def _html_table(df: pd.DataFrame, page_dir: Path) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for col, v in zip(df.columns, row, strict=True):
            text = html.escape(_fmt(v))
            if col in ("units", "features", "results_file") and text:
                href = html.escape(_relative_href(_fmt(v), page_dir), quote=True)
                text = f'<a href="{href}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _colors(table: pd.DataFrame) -> dict[str, str]:
    """One colour per encoder, the same in every plot."""
    return {enc: f"C{i % 10}" for i, enc in enumerate(sorted(table["encoder"].unique()))}


def _plot_abx(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = _colors(table)
    layered = table[table["layer"].notna()]
    flat = table[table["layer"].isna()]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for enc, g in layered.groupby("encoder", sort=True):
        per = g.groupby("layer")[["abx_within", "abx_across"]].first().sort_index()
        color = colors[enc]
        ax.plot(per.index, 100 * per["abx_within"], "o-", color=color, label=f"{enc} within")
        if per["abx_across"].notna().any():
            ax.plot(per.index, 100 * per["abx_across"], "s--", color=color, alpha=0.6, label=f"{enc} across")
    for enc, g in flat.groupby("encoder", sort=True):
        v = g["abx_within"].dropna()
        if len(v):
            ax.axhline(100 * v.iloc[0], color=colors[enc], linestyle=":", label=f"{enc} (no layers) within")
    _finish(fig, ax, path, "layer (Hugging Face hidden_states index)", "ABX error (%)",
            "Continuous-feature ABX per layer (lower is better)")


def _plot_pnmi(table: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = _colors(table)
    for row in summary.itertuples(index=False):
        g = table[(table["encoder"] == row.encoder) & (table["layer"].map(_layer_text) == row.best_layer)]
        g = g.sort_values("k")
        if g["pnmi"].notna().any():
            where = "" if row.best_layer == "-" else f" layer {row.best_layer}"
            ax.plot(g["k"], g["pnmi"], "o-", color=colors[row.encoder], label=f"{row.encoder}{where}")
            ax.plot(g["k"], g["shuffled_pnmi"], "x:", color=colors[row.encoder], alpha=0.5,
                    label=f"{row.encoder} shuffled units")
    _finish(fig, ax, path, "codebook size k", "PNMI", "PNMI vs k at each encoder's best layer (higher is better)")


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Label, grid and legend a plot, then write it atomically as PNG and free it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def compare(
    corpus: str,
    workspace: Workspace | None = None,
    encoders: list[str] | None = None,
    out_dir: str | Path | None = None,
) -> CompareResult:
    """Render the comparison of every searched encoder (or `encoders`) on `corpus`."""
    ws = workspace or Workspace.at()
    table = load_search_results(ws, corpus, encoders)
    summary = summarise(table)
    out = Path(out_dir) if out_dir else ws.root / "reports" / "compare" / safe_name(corpus)
    cols = ["encoder", "layer", "k", *METRIC_COLUMNS, "abx_within_context", "features", "features_hash",
            "units", "units_hash", "results_file", "results_hash"]
    full = table[[c for c in cols if c in table]].copy()
    full["layer"] = full["layer"].map(_layer_text)
    full = full.sort_values(["encoder", "layer", "k"], key=lambda s: s.map(lambda v: (len(str(v)), str(v))))

    files = {k: str(out / v) for k, v in {
        "markdown": "table.md", "csv": "table.csv", "html": "table.html",
        "abx_plot": "abx_by_layer.png", "pnmi_plot": "pnmi_vs_k.png", "sources": "sources.json"}.items()}
    md = [f"# Encoder comparison on `{corpus}`", "",
          "ABX: error rate (lower is better) on continuous features, within triphone context unless the "
          "context column says any (corpora without repeated triphones); PNMI with the shuffled-units "
          "baseline beside it. Layers are Hugging Face hidden_states indices.", "",
          "## Best layer per encoder", "", _markdown(summary), "",
          "## Every layer and k", "", _markdown(full), "",
          "![ABX per layer](abx_by_layer.png)", "", "![PNMI vs k](pnmi_vs_k.png)", ""]
    write_text(out / "table.md", "\n".join(md))
    write_text(out / "table.csv", full.to_csv(index=False))
    page = (f"<!doctype html><meta charset='utf-8'><title>obt-eval comparison: {html.escape(corpus)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px}</style>"
            f"<h1>Encoder comparison on {html.escape(corpus)}</h1><h2>Best layer per encoder</h2>"
            f"{_html_table(summary, out)}<h2>Every layer and k</h2>{_html_table(full, out)}"
            "<h2>Plots</h2><img src='abx_by_layer.png'><img src='pnmi_vs_k.png'>")
    write_text(out / "table.html", page)
    _plot_abx(table, out / "abx_by_layer.png")
    _plot_pnmi(table, summary, out / "pnmi_vs_k.png")
    sources = {
        "corpus": corpus,
        "results_files": sorted({(r, h) for r, h in zip(table["results_file"], table["results_hash"], strict=True)}),
        "abx_by_layer.png": full[["encoder", "layer", "features", "features_hash"]].drop_duplicates()
        .to_dict(orient="records"),
        "pnmi_vs_k.png": full[["encoder", "layer", "k", "units", "units_hash"]].to_dict(orient="records")
        if "units" in full else [],
    }
    write_json(out / "sources.json", sources)
    return CompareResult(out, full, summary, files)
