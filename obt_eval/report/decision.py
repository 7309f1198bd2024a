"""The decision report: one page that answers "which encoder for my language?" for one experiment.

`render_decision_report(data, out_dir, ratings)` takes plain data (what the experiment measured, as
dicts and lists; the ratings as a long-format DataFrame when a listening test has ratings) and writes:

* ``index.html`` — self-contained (inline CSS, figures as inline PNG), readable on a phone, with a
  verdict paragraph, one row per contender, the figures, and what evidence is still missing;
* ``report.json`` (the input and everything computed from it), ``summary.csv`` (one row per contender);
* ``figures/*.png`` (the same figures as files) and ``sources.json`` (for every figure and table
  column: the files and artifact hashes its numbers came from).

Uncertainty is stated where it is known: resynthesis metrics carry 95% t-intervals over utterances
and paired intervals over the same utterances; MOS carries the study's cluster-robust CIs and the
crossed mixed-model comparison (obt_eval.study.statistics); ABX and PNMI are point estimates.
Columns from optional analyses (predicted MOS, intelligibility, corpus language-ID and DNSMOS flags)
appear only when they were computed.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from obt_eval.atomic import atomic_path, write_json, write_text

CSS = """
.obt-report{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;max-width:980px;
 margin:0 auto;padding:12px 16px}
.obt-report h1{font-size:1.5em;margin:.3em 0}.obt-report h2{font-size:1.2em;margin:1.4em 0 .4em;
 border-bottom:1px solid #dde3ea;padding-bottom:.2em}.obt-report h3{font-size:1.02em;margin:1em 0 .3em}
.obt-report .meta{color:#5b6675;font-size:.9em}
.obt-report .verdict{background:#f3f7fb;border-left:4px solid #2f6fad;padding:.7em 1em;border-radius:4px}
.obt-report .missing{background:#fff7e6;border-left:4px solid #d08a00;padding:.5em 1em;border-radius:4px}
.obt-report .scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
.obt-report table{border-collapse:collapse;font-size:13px;margin:.4em 0;min-width:100%}
.obt-report th,.obt-report td{border:1px solid #dde3ea;padding:4px 7px;text-align:right;white-space:nowrap}
.obt-report th{background:#f0f3f6;position:sticky;top:0}.obt-report td:first-child,.obt-report th:first-child
 {text-align:left;position:sticky;left:0;background:#fff}.obt-report tr.best td{font-weight:600}
.obt-report figure{margin:1em 0}.obt-report img{max-width:100%;height:auto;border:1px solid #eef1f4}
.obt-report figcaption{font-size:.85em;color:#5b6675}.obt-report code{font-size:.85em;word-break:break-all}
.obt-report ul{padding-left:1.2em}.obt-report a{color:#2f6fad}
@media (max-width:600px){.obt-report{font-size:14px;padding:8px}.obt-report th,.obt-report td{padding:3px 5px}}
"""

# (key, label, unit, lower is better, format) of every column the summary can show
COLUMNS = [
    ("layer", "layer", "", None, "text"),
    ("k", "k", "", None, "text"),
    ("abx_within", "ABX within", "%", True, "pct"),
    ("abx_across", "ABX across", "%", True, "pct"),
    ("abx_gap", "speaker gap (ABX across − within)", "pts", True, "pct"),
    ("pnmi", "PNMI", "", False, "f3"),
    ("shuffled_pnmi", "PNMI shuffled", "", None, "f3"),
    ("speaker_probe_accuracy", "speaker probe acc.", "", True, "f2"),
    ("bitrate_dedup", "bitrate (dedup)", "bit/s", None, "f0"),
    ("mcd_db", "MCD", "dB", True, "f2"),
    ("f0_rmse_cents", "F0 RMSE", "cents", True, "f0"),
    ("gpe", "GPE", "", True, "f3"),
    ("stoi", "STOI", "", False, "f3"),
    ("dnsmos_ovrl", "DNSMOS OVRL", "", False, "f2"),
    ("distillmos", "DistillMOS", "", False, "f2"),
    ("cer", "CER", "", True, "f3"),
    ("wer", "WER", "", True, "f3"),
    ("dcer", "ΔCER vs original", "", True, "f3"),
    ("mos", "MOS", "", False, "f2"),
]
RESYNTH = ("mcd_db", "f0_rmse_cents", "gpe", "stoi")
# the metrics the verdict weighs, in the order a reader cares about them
VERDICT_METRICS = ["mos", "abx_within", "abx_across", "pnmi", "mcd_db", "f0_rmse_cents", "stoi", "dnsmos_ovrl",
                   "distillmos", "cer"]
EXCLUDED_FROM_LEAD = ("natural", "anchor")  # references, not contenders


@dataclass
class DecisionReport:
    out_dir: Path
    files: dict[str, str]
    summary: pd.DataFrame
    verdict: list[str]
    missing: list[str]


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _fmt(value: Any, kind: str) -> str:
    v = _num(value)
    if kind == "text":
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if v is None:
        return ""
    # whole units (cents, Hz) for large values; a decimal for small ones, so a small difference never reads "−0"
    whole = f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"
    return {"pct": f"{100 * v:.2f}", "f3": f"{v:.3f}", "f2": f"{v:.2f}", "f0": whole}[kind]


def _signed(value: float, kind: str) -> str:
    text = _fmt(abs(value), kind)
    return ("−" if value < 0 else "+") + text


def mean_ci(values: list[float] | np.ndarray) -> tuple[float | None, float | None, float | None, int]:
    """Mean and 95% t-interval over independent values (utterances); NaNs left out."""
    from scipy import stats

    x = np.asarray([v for v in values if _num(v) is not None], dtype=float)
    if x.size == 0:
        return None, None, None, 0
    m = float(x.mean())
    if x.size < 2:
        return m, None, None, 1
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half, int(x.size)


def _row_at_choice(contender: dict) -> dict:
    rows = contender.get("search_rows") or []
    choice = contender.get("choice") or {}
    for r in rows:
        layer = _num(r.get("layer"))
        layer = None if layer is None else int(layer)
        if layer == choice.get("layer") and int(r.get("k", -1)) == choice.get("k"):
            return r
    return {}


def summarise(data: dict, analysis: dict | None) -> pd.DataFrame:
    """One row per contender: the chosen (layer, k) and every metric measured for it."""
    mos = {s["system"]: s for s in (analysis or {}).get("systems", [])}
    rows = []
    for c in data.get("contenders", []):
        row: dict[str, Any] = {"contender": c["name"], "type": c.get("kind", "encoder")}
        choice = c.get("choice") or {}
        if row["type"] == "encoder":
            row["layer"] = choice.get("layer") if choice.get("layer") is not None else "–"
            row["k"] = choice.get("k")
            at = _row_at_choice(c)
            for key in ("abx_within", "abx_across", "abx_gap", "pnmi", "shuffled_pnmi", "bitrate_dedup"):
                row[key] = _num(at.get(key))
            um = c.get("unit_metrics") or {}
            row["speaker_probe_accuracy"] = _num(um.get("speaker_probe_accuracy"))
            row["speaker_probe_chance"] = _num(um.get("chance"))
            if row.get("bitrate_dedup") is None:
                row["bitrate_dedup"] = _num(um.get("bitrate_dedup"))
        per_utt = c.get("resynthesis") or []
        for key in RESYNTH:
            m, lo, hi, n = mean_ci([r.get(key) for r in per_utt])
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = m, lo, hi
            row["resynthesis_n"] = n if per_utt else None
        pm = (c.get("predicted_mos") or {}).get("system") or {}
        row["dnsmos_ovrl"], row["distillmos"] = _num(pm.get("dnsmos_ovrl")), _num(pm.get("distillmos"))
        it = (c.get("intelligibility") or {}).get("system") or {}
        for key in ("cer", "wer", "dcer", "dwer"):
            row[key] = _num(it.get(key))
        s = mos.get(c["name"])
        if s:
            row["mos"], row["mos_lo"], row["mos_hi"], row["mos_n"] = s["mos"], s["ci95"][0], s["ci95"][1], s["n"]
        rows.append(row)
    for name, s in mos.items():  # the natural recordings' MOS: the ceiling the contenders are heard against
        if name not in {r["contender"] for r in rows} and name not in ("anchor",):
            rows.append({"contender": name, "type": "reference", "mos": s["mos"], "mos_lo": s["ci95"][0],
                         "mos_hi": s["ci95"][1], "mos_n": s["n"]})
    return pd.DataFrame(rows)


def _present(summary: pd.DataFrame, key: str) -> bool:
    return key in summary and summary[key].map(lambda v: _num(v) is not None).any()


def paired_difference(a: list[dict], b: list[dict], key: str) -> tuple[float, float | None, float | None, int] | None:
    """Mean of per-utterance differences a − b over the utterances both have, with a 95% t-interval."""
    va = {r["id"]: _num(r.get(key)) for r in a}
    vb = {r["id"]: _num(r.get(key)) for r in b}
    d = [va[u] - vb[u] for u in va if u in vb and va[u] is not None and vb[u] is not None]
    if not d:
        return None
    m, lo, hi, n = mean_ci(d)
    return m, lo, hi, n


def _contenders(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows that compete (not the natural reference or the anchor)."""
    if summary.empty:
        return summary
    return summary[~summary["contender"].isin(EXCLUDED_FROM_LEAD) & (summary["type"] != "reference")]


def verdict(data: dict, summary: pd.DataFrame, analysis: dict | None) -> list[str]:
    """Sentences: who leads on what, by how much, with what uncertainty."""
    labels = {c[0]: (c[1], c[2], c[3], c[4]) for c in COLUMNS}
    by_name = {c["name"]: c for c in data.get("contenders", [])}
    out: list[str] = []
    leads: dict[str, list[str]] = {}
    contenders = _contenders(summary)
    for key in VERDICT_METRICS:
        if not _present(contenders, key):
            continue
        label, unit, lower, kind = labels[key]
        values = {r["contender"]: _num(r[key]) for _, r in contenders.iterrows() if _num(r[key]) is not None}
        if len(values) < 2:
            continue
        ranked = sorted(values, key=lambda n: values[n], reverse=not lower)
        best, second = ranked[0], ranked[1]
        diff = abs(values[best] - values[second])
        if math.isclose(values[best], values[second], rel_tol=1e-9, abs_tol=1e-12):
            tied = [n for n in ranked if math.isclose(values[n], values[best], rel_tol=1e-9, abs_tol=1e-12)]
            out.append(f"{label}: {', '.join(html.escape(n) for n in tied)} tie at "
                       f"{_fmt(values[best], kind)}{'%' if kind == 'pct' else ''}.")
            continue
        scale, shown_unit = (100.0, " points") if kind == "pct" else (1.0, f" {unit}" if unit else "")
        text = (f"<b>{html.escape(best)}</b> leads on {label} ({_fmt(values[best], kind)}{'%' if kind == 'pct' else ''}"
                f" vs {_fmt(values[second], kind)}{'%' if kind == 'pct' else ''} for {html.escape(second)}, "
                f"{(f'{diff * scale:.2f}' if kind == 'pct' else _fmt(diff, kind))}{shown_unit} "
                f"{'lower' if lower else 'higher'}; ")
        if key in RESYNTH:
            pd_ = paired_difference(by_name[best].get("resynthesis") or [],
                                    by_name[second].get("resynthesis") or [], key)
            if pd_ and pd_[1] is not None:
                m, lo, hi, n = pd_
                overlaps = lo <= 0 <= hi
                text += (f"paired difference over {n} utterances {_signed(m, kind)} "
                         f"[95% CI {_signed(lo, kind)}, {_signed(hi, kind)}]"
                         f"{' — the interval includes 0: not a clear difference' if overlaps else ''})")
            else:
                text += "too few shared utterances for an interval)"
        elif key == "mos":
            comp = _comparison(analysis, best, second)
            if comp:
                p = _num(comp.get("p_holm"))
                ci = comp.get("mixed_ci95") or comp.get("diff_ci95")
                ci_text = f", 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci and _num(ci[0]) is not None else ""
                sig = ("significant" if comp.get("significant") else "not significant")
                text += (f"difference {abs(_num(comp.get('diff')) or diff):.2f}{ci_text}, mixed model "
                         f"p (Holm) = {p:.3g}: {sig} at α = {analysis.get('alpha', 0.05)})" if p is not None
                         else "no test could be fitted)")
            else:
                text += "no paired comparison available)"
        elif key in ("dnsmos_ovrl", "distillmos"):
            text += "predicted by a model, system means; no interval)"
        elif key == "cer":
            text += "ASR on the synthesized clips, system means; no interval)"
        else:
            text += "a point estimate without a resampling interval)"
        out.append(text)
        leads.setdefault(best, []).append(label)
    if leads:
        top = max(leads, key=lambda n: len(leads[n]))
        total = sum(len(v) for v in leads.values())
        out.insert(0, f"<b>{html.escape(top)}</b> leads on {len(leads[top])} of the {total} measures compared "
                      f"({', '.join(leads[top])}).")
    return out


def _comparison(analysis: dict | None, a: str, b: str) -> dict | None:
    for comp in (analysis or {}).get("comparisons", []):
        if {comp.get("a"), comp.get("b")} == {a, b}:
            return comp
    return None


def missing_evidence(data: dict, summary: pd.DataFrame, analysis: dict | None) -> list[str]:
    """What the decision still lacks, in plain words."""
    out = []
    study = data.get("study")
    if not study:
        out.append("listening test: no study yet (it is created when every contender is synthesized)")
    else:
        target = study.get("target_raters")
        raters = int(analysis["n_raters"]) if analysis else 0
        out.append(f"listening test: {raters} of {target} raters so far "
                   f"({study.get('trials_rated', 0)} of {study.get('trials', 0)} trials rated)"
                   if target else f"listening test: {raters} raters so far")
    corpus = data.get("corpus") or {}
    if not corpus.get("alignments"):
        out.append("ABX and PNMI: not computed — the corpus has no phone alignments (ingest with --alignments)")
    encoders = summary[summary["type"] == "encoder"] if not summary.empty else summary
    if not encoders.empty and not _present(encoders, "mcd_db"):
        out.append("resynthesis metrics: not computed yet")
    for c in data.get("contenders", []):
        if c.get("kind") == "system" and not c.get("resynthesis"):
            out.append(f"resynthesis metrics of {c['name']}: not computed yet")
    if not _present(summary, "dnsmos_ovrl") and not _present(summary, "distillmos"):
        out.append("predicted MOS (DNSMOS / DistillMOS): not computed")
    if not _present(summary, "cer"):
        out.append("intelligibility (ASR CER / WER): not computed")
    for note in data.get("notes", []):
        out.append(note)
    return out


# --- figures ----------------------------------------------------------------------------------------------


def _figure(width: float = 7.0, height: float = 4.0):  # noqa: ANN202 — a matplotlib Figure
    # the object API, not pyplot: reports may be rendered in worker threads, and pyplot is not thread-safe
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _png(fig) -> bytes:  # noqa: ANN001
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colors(names: list[str]) -> dict[str, str]:
    palette = ["#2f6fad", "#d0632b", "#3b9a57", "#8a4fb0", "#b8912b", "#c0437a", "#4a9fb5", "#6b6b6b"]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def plot_abx(data: dict) -> bytes | None:
    """ABX within/across per layer for layered encoders (baselines as horizontal lines); bars if none has layers."""
    encoders = [c for c in data.get("contenders", []) if c.get("kind", "encoder") == "encoder"]
    colors = _colors([c["name"] for c in encoders])
    scored = {c["name"]: [r for r in c.get("search_rows") or [] if _num(r.get("abx_within")) is not None]
              for c in encoders}
    scored = {n: rows for n, rows in scored.items() if rows}
    if not scored:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    layered_any = any(_num(r.get("layer")) is not None for rows in scored.values() for r in rows)
    if not layered_any:
        names = list(scored)
        for i, n in enumerate(names):
            row = scored[n][0]
            ax.bar(i - 0.2, 100 * _num(row["abx_within"]), 0.4, color=colors[n])
            if _num(row.get("abx_across")) is not None:
                ax.bar(i + 0.2, 100 * _num(row["abx_across"]), 0.4, color=colors[n], alpha=0.5, hatch="//")
        ax.set_xticks(range(len(names)), [f"{n}\n(within | across)" for n in names], fontsize=8)
        ax.set_ylabel("ABX error (%)")
        ax.set_title("ABX within (solid) and across (hatched) speakers (lower is better)")
        ax.grid(alpha=0.3, axis="y")
        return _png(fig)
    for c in encoders:
        rows = scored.get(c["name"])
        if not rows:
            continue
        color = colors[c["name"]]
        layered = [r for r in rows if _num(r.get("layer")) is not None]
        if not layered:
            ax.axhline(100 * _num(rows[0]["abx_within"]), color=color, linestyle=":", label=f"{c['name']} within")
            if _num(rows[0].get("abx_across")) is not None:
                ax.axhline(100 * _num(rows[0]["abx_across"]), color=color, linestyle="-.", alpha=0.6,
                           label=f"{c['name']} across")
            continue
        per: dict[int, dict] = {}
        for r in layered:
            per.setdefault(int(_num(r["layer"])), r)
        xs = sorted(per)
        ax.plot(xs, [100 * _num(per[x]["abx_within"]) for x in xs], "o-", color=color, label=f"{c['name']} within")
        across = [_num(per[x].get("abx_across")) for x in xs]
        if any(v is not None for v in across):
            ax.plot(xs, [100 * v if v is not None else np.nan for v in across], "s--", color=color, alpha=0.6,
                    label=f"{c['name']} across")
        chosen = (c.get("choice") or {}).get("layer")
        if chosen in per:
            ax.plot([chosen], [100 * _num(per[chosen]["abx_within"])], "*", ms=14, color=color)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (Hugging Face hidden_states index)")
    ax.set_ylabel("ABX error (%)")
    ax.set_title("ABX by layer (lower is better; ★ chosen layer)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_pnmi(data: dict) -> bytes | None:
    encoders = [c for c in data.get("contenders", []) if c.get("kind", "encoder") == "encoder"]
    colors = _colors([c["name"] for c in encoders])
    fig = _figure()
    ax = fig.add_subplot()
    drawn = False
    for c in encoders:
        layer = (c.get("choice") or {}).get("layer")
        rows = [r for r in c.get("search_rows") or [] if _num(r.get("pnmi")) is not None
                and (None if _num(r.get("layer")) is None else int(_num(r["layer"]))) == layer]
        if not rows:
            continue
        rows.sort(key=lambda r: int(r["k"]))
        ks = [int(r["k"]) for r in rows]
        ax.plot(ks, [_num(r["pnmi"]) for r in rows], "o-", color=colors[c["name"]],
                label=c["name"] + ("" if layer is None else f" layer {layer}"))
        ax.plot(ks, [_num(r.get("shuffled_pnmi")) or np.nan for r in rows], "x:", color=colors[c["name"]], alpha=0.5,
                label=f"{c['name']} shuffled units")
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("codebook size k")
    ax.set_ylabel("PNMI")
    ax.set_title("PNMI vs k at the chosen layer (higher is better; dotted: chance)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_resynthesis(summary: pd.DataFrame) -> bytes | None:
    keys = [k for k in ("mcd_db", "f0_rmse_cents", "stoi") if _present(summary, k)]
    if not keys:
        return None
    names = summary["contender"].tolist()
    colors = _colors(names)
    fig = _figure(3.2 * len(keys) + 0.6, 3.8)
    titles = {"mcd_db": "MCD (dB, lower better)", "f0_rmse_cents": "F0 RMSE (cents, lower better)",
              "stoi": "STOI (higher better)"}
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for j, (_, r) in enumerate(summary.iterrows()):
            m = _num(r.get(key))
            if m is None:
                continue
            lo, hi = _num(r.get(f"{key}_lo")), _num(r.get(f"{key}_hi"))
            err = [[m - lo], [hi - m]] if lo is not None and hi is not None else None
            ax.bar(j, m, color=colors[r["contender"]], yerr=err, capsize=4)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(titles[key], fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Resynthesis of the held-out utterances (mean, 95% CI over utterances)", fontsize=10)
    return _png(fig)


def plot_mos(analysis: dict | None) -> bytes | None:
    systems = [s for s in (analysis or {}).get("systems", []) if s.get("system") != "anchor"]
    if not systems:
        return None
    fig = _figure(6.5, 3.6)
    ax = fig.add_subplot()
    names = [s["system"] for s in systems]
    colors = _colors(names)
    for i, s in enumerate(systems):
        lo, hi = s["ci95"]
        err = [[s["mos"] - lo], [hi - s["mos"]]] if _num(lo) is not None and _num(hi) is not None else None
        ax.errorbar(i, s["mos"], yerr=err, fmt="o", color=colors[s["system"]], capsize=5, ms=8)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(1, 5)
    ax.set_ylabel("MOS (1–5)")
    ax.set_title("Listening test: MOS with 95% CIs (clustered by rater and utterance)")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


# --- the page ---------------------------------------------------------------------------------------------


def _table(summary: pd.DataFrame, columns: list[tuple], best: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(label)}{f' ({html.escape(unit)})' if unit else ''}</th>"
                   for _, label, unit, _, _ in columns)
    body = []
    for _, r in summary.iterrows():
        cells = []
        for key, _, _, _, kind in columns:
            text = html.escape(_fmt(r.get(key), kind))
            lo, hi = _num(r.get(f"{key}_lo")), _num(r.get(f"{key}_hi"))
            if text and lo is not None and hi is not None:
                scale = 100 if kind == "pct" else 1
                text += f" <small>[{lo * scale:.2f}, {hi * scale:.2f}]</small>"
            if key == "pnmi" and text and _num(r.get("shuffled_pnmi")) is not None:
                text += f" <small>(chance {_num(r['shuffled_pnmi']):.3f})</small>"
            if key == "speaker_probe_accuracy" and text and _num(r.get("speaker_probe_chance")) is not None:
                text += f" <small>(chance {_num(r['speaker_probe_chance']):.2f})</small>"
            if best.get(key) == r["contender"] and text:
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr><td>{html.escape(str(r['contender']))}</td>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table><thead><tr><th>contender</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _best_per_column(summary: pd.DataFrame) -> dict[str, str]:
    out = {}
    contenders = _contenders(summary)
    for key, _, _, lower, _ in COLUMNS:
        if lower is None or not _present(contenders, key):
            continue
        values = {r["contender"]: _num(r[key]) for _, r in contenders.iterrows() if _num(r[key]) is not None}
        if len(values) >= 2:
            out[key] = (min if lower else max)(values, key=values.get)
    return out


def _quality_section(corpus: dict) -> str:
    q = corpus.get("quality") or {}
    if not q:
        return ""
    parts = ["<h3>Source recordings</h3><ul>"]
    lid = q.get("lid")
    if lid:
        top = ", ".join(f"{html.escape(str(k))}: {v}" for k, v in list(lid.get("top1_counts", {}).items())[:8])
        flagged = lid.get("flagged", [])
        parts.append(f"<li>language ID (top-1 per utterance): {top}</li>")
        parts.append(f"<li>{len(flagged)} utterance(s) flagged by language ID"
                     + (f": <code>{html.escape(', '.join(flagged[:30]))}</code>{' …' if len(flagged) > 30 else ''}"
                        if flagged else "") + "</li>")
    dns = q.get("dnsmos")
    if dns:
        parts.append(f"<li>DNSMOS OVRL of the recordings: mean {dns['mean']:.2f}, lowest {dns['min']:.2f} "
                     f"({dns['n']} utterances; {len(dns.get('below_3', []))} below 3.0"
                     + (f": <code>{html.escape(', '.join(dns['below_3'][:20]))}</code>" if dns.get("below_3") else "")
                     + ")</li>")
    parts.append("</ul>")
    return "".join(parts)


def render_html(data: dict, summary: pd.DataFrame, verdict_lines: list[str], missing: list[str],
                figures: dict[str, bytes], analysis: dict | None) -> str:
    """The page (a complete HTML document whose body is one `.obt-report` block, embeddable in the app)."""
    name = html.escape(str(data.get("experiment", "experiment")))
    corpus = data.get("corpus") or {}
    columns = [c for c in COLUMNS if _present(summary, c[0]) or (c[0] in ("layer", "k") and c[0] in summary)]
    columns = [c for c in columns if c[0] != "shuffled_pnmi"]
    best = _best_per_column(summary)
    held = data.get("heldout") or {}
    parts = [f"<h1>Which encoder? — {name}</h1>",
             f"<p class='meta'>corpus <b>{html.escape(str(corpus.get('name', '')))}</b>: "
             f"{corpus.get('utterances', '?')} utterances, {(corpus.get('seconds') or 0) / 60:.1f} min, "
             f"{corpus.get('speakers', '?')} speakers · generated {html.escape(str(data.get('generated_at', '')))}"
             f" · {html.escape(str(held.get('rule', '')))}</p>",
             "<h2>Verdict</h2><div class='verdict'>"]
    if verdict_lines:
        parts.append("<p>" + " ".join(verdict_lines[:1]) + "</p><ul>"
                     + "".join(f"<li>{line}</li>" for line in verdict_lines[1:]) + "</ul>")
    else:
        parts.append("<p>Not enough results yet to compare the contenders.</p>")
    parts.append("</div>")
    if missing:
        parts.append("<h3>Evidence still missing</h3><div class='missing'><ul>"
                     + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul></div>")
    parts.append("<h2>Contenders</h2>")
    parts.append(_table(summary, columns, best))
    parts.append("<p class='meta'>ABX in % error (lower is better); speaker gap = ABX across − within speakers "
                 "(smaller = more speaker-invariant); PNMI with its shuffled-units chance level; resynthesis "
                 "metrics with 95% intervals over the held-out utterances; MOS with cluster-robust 95% CIs. "
                 "Bold: the best contender per column.</p>")
    choices = [c for c in data.get("contenders", []) if c.get("choice")]
    if choices:
        parts.append("<h3>How each (layer, k) was chosen</h3><ul>" + "".join(
            f"<li><b>{html.escape(c['name'])}</b>: {html.escape(c['choice'].get('reason', ''))}</li>"
            for c in choices) + "</ul>")
    notes = [(c["name"], n) for c in data.get("contenders", []) for n in c.get("notes", [])]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}: {html.escape(t)}</li>" for n, t in notes) + "</ul>")
    captions = {"abx_by_layer": "ABX within (solid) and across (dashed) speakers per layer; ★ marks the chosen layer.",
                "pnmi_vs_k": "PNMI per codebook size at the chosen layer, with shuffled units as chance.",
                "resynthesis": "Resynthesis metrics of the held-out utterances, mean and 95% CI.",
                "mos": "Mean opinion score per system with 95% CIs (natural recordings as reference)."}
    if figures:
        parts.append("<h2>Figures</h2>")
        for key, png in figures.items():
            b64 = base64.b64encode(png).decode()
            parts.append(f"<figure><img alt='{key}' src='data:image/png;base64,{b64}'>"
                         f"<figcaption>{captions.get(key, '')} <a href='figures/{key}.png'>PNG</a> · "
                         f"sources in <a href='sources.json'>sources.json</a></figcaption></figure>")
    if analysis and analysis.get("comparisons"):
        parts.append("<h2>Listening test: pairwise comparisons</h2>")
        rows = "".join(
            f"<tr><td>{html.escape(c['a'])} − {html.escape(c['b'])}</td><td>{_fmt(c.get('diff'), 'f2')}</td>"
            f"<td>{_fmt(c.get('p_mixed'), 'f3')}</td><td>{_fmt(c.get('p_holm'), 'f3')}</td>"
            f"<td>{c.get('n_ratings', '')}</td></tr>" for c in analysis["comparisons"])
        parts.append("<div class='scroll'><table><thead><tr><th>pair</th><th>diff</th><th>p (mixed)</th>"
                     f"<th>p (Holm)</th><th>ratings</th></tr></thead><tbody>{rows}</tbody></table></div>"
                     f"<p class='meta'>{html.escape(analysis['comparisons'][0].get('model', ''))}</p>")
    parts.append(_quality_section(corpus))
    parts.append("<h2>Files</h2><ul><li><a href='report.json'>report.json</a> — every number on this page and "
                 "its inputs</li><li><a href='summary.csv'>summary.csv</a> — one row per contender</li>"
                 "<li><a href='sources.json'>sources.json</a> — the files and artifact hashes behind each figure "
                 "and column</li></ul>")
    body = "\n".join(p for p in parts if p)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>obt-eval decision report: {name}</title><style>{CSS}</style></head>"
            f"<body><div class='obt-report'>{body}</div></body></html>")


def sources(data: dict, figures: dict[str, bytes]) -> dict:
    """For each figure and summary column: the files (and hashes) its numbers came from."""
    enc = [c for c in data.get("contenders", []) if c.get("kind", "encoder") == "encoder"]
    search = [{"contender": c["name"], "file": c.get("search_file"), "sha256": c.get("search_hash"),
               "features": sorted({(r.get("features"), r.get("features_hash")) for r in c.get("search_rows") or []}),
               "units": sorted({(r.get("units"), r.get("units_hash")) for r in c.get("search_rows") or []})}
              for c in enc if c.get("search_file")]
    resynth = [{"contender": c["name"], "file": c.get("resynthesis_file"), "sha256": c.get("resynthesis_hash"),
                "stimuli": c.get("stimuli")} for c in data.get("contenders", []) if c.get("resynthesis_file")]
    optional = [{"contender": c["name"], "predicted_mos": c.get("predicted_mos_file"),
                 "intelligibility": c.get("intelligibility_file")} for c in data.get("contenders", [])
                if c.get("predicted_mos_file") or c.get("intelligibility_file")]
    unit = [{"contender": c["name"], "file": c.get("unit_metrics_file"), "sha256": c.get("unit_metrics_hash")}
            for c in enc if c.get("unit_metrics_file")]
    out = {"experiment": data.get("experiment"), "plan": data.get("plan_file"),
           "provenance": data.get("provenance_file"),
           "columns": {"layer, k, abx_*, pnmi, bitrate_dedup": search, "speaker_probe_accuracy": unit,
                       "mcd_db, f0_rmse_cents, gpe, stoi": resynth, "dnsmos_ovrl, distillmos, cer, wer": optional,
                       "mos": (data.get("study") or {}).get("source")},
           "figures": {}}
    for key in figures:
        out["figures"][f"figures/{key}.png"] = {"abx_by_layer": search, "pnmi_vs_k": search, "resynthesis": resynth,
                                                "mos": (data.get("study") or {}).get("source")}[key]
    return out


def render_decision_report(data: dict, out_dir: str | Path, ratings: pd.DataFrame | None = None) -> DecisionReport:
    """Write the decision report of one experiment into `out_dir` (see the module docstring)."""
    out = Path(out_dir)
    analysis = None
    if ratings is not None and not ratings.empty:
        from obt_eval.errors import BadInputError
        from obt_eval.study.statistics import analyse

        try:
            analysis = analyse(ratings)
        except BadInputError as exc:
            data = {**data, "notes": [*data.get("notes", []), f"ratings not analysed yet: {exc}"]}
    summary = summarise(data, analysis)
    lines = verdict(data, summary, analysis) if not summary.empty else []
    missing = missing_evidence(data, summary, analysis)
    figures = {}
    for key, png in (("abx_by_layer", plot_abx(data)), ("pnmi_vs_k", plot_pnmi(data)),
                     ("resynthesis", plot_resynthesis(summary)) if not summary.empty else ("resynthesis", None),
                     ("mos", plot_mos(analysis))):
        if png is not None:
            figures[key] = png
    for key, png in figures.items():
        with atomic_path(out / "figures" / f"{key}.png", suffix=".png") as tmp:
            tmp.write_bytes(png)
    page = render_html(data, summary, lines, missing, figures, analysis)
    write_text(out / "index.html", page)
    write_text(out / "summary.csv", summary.to_csv(index=False))
    write_json(out / "report.json", {"input": data, "summary": summary.to_dict(orient="records"),
                                     "verdict": lines, "missing": missing, "listening_test": analysis})
    write_json(out / "sources.json", sources(data, figures))
    files = {"html": str(out / "index.html"), "json": str(out / "report.json"), "csv": str(out / "summary.csv"),
             "sources": str(out / "sources.json"), **{k: str(out / "figures" / f"{k}.png") for k in figures}}
    return DecisionReport(out, files, summary, lines, missing)
