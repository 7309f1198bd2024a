"""Experiments from the Admin tab, as plain functions: the form's choices and checks, the stage view, the actions.

Every function a page event reaches starts with `require_admin` (a script can call any event), and every
experiment name that comes from the page is checked against the workspace's experiments before it turns
into a path. The formatting helpers (`stage_rows`, `human_seconds`, `tail_lines`, `log_job`, `actions`)
are pure, so the tests pin them down without a browser.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.workspace import check_name
from pipelines.experiments import api
from pipelines.experiments.options import ExperimentOptions, validate_options
from pipelines.experiments.presets import PRESETS, preset
from webapp import admin
from webapp.auth import AdminSession, require_admin
from webapp.context import AppContext

MAX_TEXT = 200  # a name, a layer list, a list of k values
MAX_ENCODERS = 12
LOG_LINES = 30  # the log box shows this many of the last lines: the end, never the beginning
MAX_LOG_LINE = 400  # a progress bar redrawn without newlines must not become one endless line
# A Hugging Face model id: owner/name (letters, digits, -, _ and .), as the Hub allows them.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
LAYER_SPEC = re.compile(r"^\d{1,3}(-\d{1,3})?(,\d{1,3}(-\d{1,3})?)*$")
FINAL = ("done", "failed", "cancelled")
STATE_MARKS = {"done": "✓", "failed": "✗", "running": "▶", "queued": "…", "cancelled": "■", "pending": "·"}
EXPERIMENT_COLUMNS = ["experiment", "state", "stages", "corpus", "encoders", "updated"]
STAGE_COLUMNS = ["stage", "state", "progress", "elapsed", "ETA"]
FORM_FIELDS = ("preset", "name", "corpus", "encoders", "other_encoders", "layers", "ks", "vocoder_preset",
               "vocoder_steps", "study_utterances")


def bounded_text(value: object, what: str, limit: int = MAX_TEXT) -> str:
    """A form field as the page (or a script) sent it: the admin tab's bounded text, stripped."""
    return admin.bounded_text(value, what, limit).strip()


def _whole(value: object, what: str, lo: int, hi: int, default: int | None = None) -> int | None:
    """A whole number from a gr.Number (a float, or None when the box is empty) within [lo, hi]."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"the {what} must be a number") from None
    if number != int(number) or not lo <= number <= hi:
        raise BadInputError(f"the {what} must be a whole number from {lo} to {hi}, not {value}",
                            f"enter a number between {lo} and {hi}")
    return int(number)


# --- the form's choices --------------------------------------------------------------------------------------


def human_seconds(seconds: float | None) -> str:
    """3 s · 1 min 05 s · 2 h 04 min; an em dash when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def encoder_label(facts: dict[str, Any]) -> str:
    """``mms-300m · 315M · CC-BY-NC-4.0`` — what a researcher weighs before choosing an encoder."""
    params = facts.get("params_millions")
    if not params:
        size = "no weights"
    elif params >= 1000:
        size = f"{params / 1000:.1f}B"
    else:
        size = f"{params:.0f}M"
    licence = facts.get("licence") or "licence unknown"
    if licence.startswith("none"):
        licence = "baseline"
    return " · ".join([facts["name"], size, licence])


def encoder_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered encoder (built in and plugins), as the registry orders them."""
    from obt_eval.encoders.registry import registered_encoders

    return [(encoder_label(spec.facts()), name) for name, spec in registered_encoders().items()]


def corpora(ctx: AppContext) -> list[dict[str, Any]]:
    """The ingested corpora of the workspace with their size, from each corpus's ``corpus.json``."""
    root = Path(ctx.workspace.root) / "corpora"
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        info_path = folder / "corpus.json"
        if not folder.is_dir() or not info_path.is_file():
            continue
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        summary = info.get("summary", info)
        hours = summary.get("hours")
        out.append({"name": folder.name, "utterances": summary.get("utterances", summary.get("ingested")),
                    "seconds": float(hours) * 3600 if isinstance(hours, int | float) else None,
                    "speakers": summary.get("speakers")})
    return out


def corpus_label(row: dict[str, Any]) -> str:
    """``demo · 24 utterances · 1 min 00 s · 4 speakers``."""
    parts = [row["name"]]
    if row.get("utterances") is not None:
        parts.append(f"{row['utterances']} utterances")
    if row.get("seconds") is not None:
        parts.append(human_seconds(row["seconds"]))
    if row.get("speakers"):
        parts.append(f"{row['speakers']} speakers")
    return " · ".join(parts)


def corpus_choices(ctx: AppContext, session: AdminSession, preset_name: str | None = None) -> list[tuple[str, str]]:
    """The corpus dropdown: every ingested corpus, plus the one a preset generates when it is not there yet."""
    require_admin(session)
    rows = corpora(ctx)
    choices = [(corpus_label(r), r["name"]) for r in rows]
    if preset_name:
        made = preset(preset_name)
        if made.demo_corpus is not None and made.corpus not in {r["name"] for r in rows}:
            choices.insert(0, (f"{made.corpus} · synthetic, generated by the {preset_name} preset",
                               made.corpus))
    return choices


PRESET_LABELS = {"demo": "demo · synthetic corpus, mfcc vs logmel, tiny vocoders"}


def preset_choices() -> list[tuple[str, str]]:
    return [("none · fill in the form", ""), *[(PRESET_LABELS.get(name, name), name) for name in PRESETS]]


def form_values(preset_name: str | None) -> dict[str, Any]:
    """What the form shows for a preset (or the defaults of a new experiment when none is chosen)."""
    options = preset(preset_name) if preset_name else None
    if options is None:
        return {"preset": "", "name": "", "corpus": None, "encoders": [], "other_encoders": "", "layers": "default",
                "ks": "100", "vocoder_preset": "reference", "vocoder_steps": None, "study_utterances": 50}
    listed = {name for _, name in encoder_choices()}
    return {"preset": preset_name, "name": options.name, "corpus": options.corpus,
            "encoders": [e for e in options.encoders if e in listed],
            "other_encoders": ", ".join(e for e in options.encoders if e not in listed),
            "layers": options.layers, "ks": ", ".join(str(k) for k in options.ks),
            "vocoder_preset": options.vocoder_preset, "vocoder_steps": options.vocoder_steps,
            "study_utterances": options.study_utterances}


# --- the form's checks ------------------------------------------------------------------------------------


def parse_ks(text: object) -> list[int]:
    """``"100, 150,200"`` -> [100, 150, 200]; the first k is the one the default rule takes."""
    raw = bounded_text(text, "k values")
    if not raw:
        raise BadInputError("give at least one k (codebook size)", "e.g. 100, or 100, 150, 200 to search several")
    values = []
    for part in raw.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or not 2 <= int(part) <= 10_000:
            raise BadInputError(f"k {part!r} is not a whole number from 2 to 10000", "write e.g. 100, 150, 200")
        values.append(int(part))
    if len(values) > 12:
        raise BadInputError("at most 12 k values", "search fewer codebook sizes")
    return list(dict.fromkeys(values))


def check_layers(text: object) -> str:
    """``default``, ``auto``, or a layer list such as ``14`` or ``12-18`` or ``6,9-11`` (ranges low to high)."""
    raw = bounded_text(text, "layers").replace(" ", "").lower() or "default"
    if raw in ("default", "auto"):
        return raw
    if not LAYER_SPEC.match(raw):
        raise BadInputError(f"layers {raw!r} is not default, auto or a layer list",
                            "write default, auto, a layer (14) or a range (12-18)")
    for part in raw.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise BadInputError(f"the layer range {part} runs backwards", f"write {hi}-{lo}")
    return raw


def parse_other_encoders(ctx: AppContext, text: object) -> list[str]:
    """Encoders beyond the registry: Hugging Face ids (``owner/model``) or checkpoint folders the app may read
    (in the workspace or `OBT_EVAL_DATA_ROOTS`), comma-separated; folders come back as absolute paths."""
    from obt_eval.encoders.registry import resolve_encoder
    from pipelines.params import confined

    out = []
    for item in (part.strip() for part in bounded_text(text, "other encoders", 4 * MAX_TEXT).split(",")):
        if not item:
            continue
        if HUB_ID.match(item) and not (Path(ctx.workspace.root) / item).exists():
            out.append(item)  # owner/model, unless the workspace has a folder of that name
            continue
        if not item.startswith(("/", "~", ".")) and "/" not in item:
            raise BadInputError(f"{item[:60]!r} is neither a Hugging Face id nor a folder",
                                "write a Hub id like utter-project/mHuBERT-147, or the full path of a checkpoint "
                                "folder on the server (or pick a registered encoder above)")
        path = confined(ctx.workspace, item)[0]
        if not path.is_dir():
            raise BadInputError(f"no checkpoint folder {item[:80]!r} on the server",
                                "give the full path of a folder written by save_pretrained(), or a Hub id")
        try:
            resolve_encoder(str(path))
        except NotFoundError as exc:
            raise BadInputError(str(exc).split("\n")[0], "give a folder written by save_pretrained() (config.json "
                                "+ weights) or an ESPnet SSL folder (config.yaml + a .pth checkpoint)") from exc
        out.append(str(path.resolve()))
    return out


def options_from_form(ctx: AppContext, form: dict[str, Any]) -> ExperimentOptions:
    """Typed, bounded experiment options from the form (a preset's hidden settings kept when one is chosen)."""
    preset_name = bounded_text(form.get("preset"), "preset") or None
    if preset_name and preset_name not in PRESETS:
        raise BadInputError(f"unknown preset {preset_name!r}", f"choose one of: {', '.join(PRESETS)}")
    name = bounded_text(form.get("name"), "experiment name")
    if not name:
        raise BadInputError("give the experiment a name", "e.g. satere-first (letters, digits, - and _)")
    check_name(name, "experiment name")
    corpus = bounded_text(form.get("corpus"), "corpus")
    if not corpus:
        raise BadInputError("choose a corpus", "ingest one under Corpora below, or choose the demo preset")
    check_name(corpus, "corpus name")
    encoders = form.get("encoders") or []
    if not isinstance(encoders, list) or not all(isinstance(e, str) for e in encoders):
        raise BadInputError("the encoders must be a list of names")
    known = {name for _, name in encoder_choices()}
    unknown = [e for e in encoders if e not in known]
    if unknown:
        raise BadInputError(f"unknown encoder {unknown[0][:60]!r}",
                            "choose encoders from the list (a Hub id or a checkpoint folder: under Other encoders)")
    encoders = [*encoders, *parse_other_encoders(ctx, form.get("other_encoders"))]
    if not encoders:
        raise BadInputError("choose at least one encoder", "tick two or more to compare them")
    if len(encoders) > MAX_ENCODERS:
        raise BadInputError(f"at most {MAX_ENCODERS} encoders at once", "split the comparison in two experiments")
    given: dict[str, Any] = {
        "name": name, "corpus": corpus, "encoders": encoders, "layers": check_layers(form.get("layers")),
        "ks": parse_ks(form.get("ks")), "vocoder_preset": bounded_text(form.get("vocoder_preset"), "vocoder preset"),
        "vocoder_steps": _whole(form.get("vocoder_steps"), "number of vocoder training steps", 1, 10_000_000),
        "study_utterances": _whole(form.get("study_utterances"), "number of study utterances", 2, 300, 50),
    }
    if not given["vocoder_preset"]:
        raise BadInputError("choose a vocoder preset", "reference is the published recipe; tiny is for a quick look")
    if preset_name:
        base = preset(preset_name, name=name).to_dict()
        if corpus != base["corpus"]:
            base["demo_corpus"] = None  # the preset's generated corpus is not the one chosen
        merged = {**base, **given}
    else:
        merged = given
    if merged.get("demo_corpus") is None and corpus not in {r["name"] for r in corpora(ctx)}:
        raise BadInputError(f"no corpus {corpus!r} in the workspace", "ingest it under Corpora below first")
    return validate_options(merged)


def run(ctx: AppContext, session: AdminSession, form: dict[str, Any]) -> str:
    """Start (or re-run) the experiment the form describes; returns its name. Nothing heavy runs here."""
    require_admin(session)
    return api.start(ctx.workspace, options_from_form(ctx, form))


# --- the experiment list and one experiment's state -----------------------------------------------------------


def experiment_names(ctx: AppContext, session: AdminSession) -> list[str]:
    require_admin(session)
    return [e["name"] for e in api.list_experiments(ctx.workspace)]


def known(ctx: AppContext, name: object) -> str:
    """An experiment name from the page, checked to be one of the workspace's experiments (never a path)."""
    text = bounded_text(name, "experiment name")
    if not text:
        raise BadInputError("choose an experiment first")
    check_name(text, "experiment name")
    from pipelines.experiments.coordinator import list_names

    if text not in list_names(ctx.workspace):
        raise NotFoundError(f"no experiment {text!r} in this workspace", "choose one from the list")
    return text


def experiments_table(ctx: AppContext, session: AdminSession) -> pd.DataFrame:
    require_admin(session)
    rows = [{"experiment": e["name"], "state": e["state"], "stages": f"{e['stages_done']}/{e['stages']}",
             "corpus": e["corpus"], "encoders": ", ".join(e["encoders"] + e["systems"]),
             "updated": (e.get("updated_at") or "")[:19].replace("T", " ")}
            for e in api.list_experiments(ctx.workspace)]
    return pd.DataFrame(rows, columns=EXPERIMENT_COLUMNS)


def any_running(ctx: AppContext) -> bool:
    """Is any experiment or job still going (the stage view polls only then)?"""
    from pipelines import jobs

    if any(e["state"] == "running" for e in api.list_experiments(ctx.workspace)):
        return True
    return bool(jobs.list_jobs(ctx.workspace, limit=1, states=jobs.ACTIVE_STATES))


def status(ctx: AppContext, session: AdminSession, name: object, advance: bool = False) -> dict[str, Any]:
    """The experiment's state (`api.status`); `advance` also submits the stages of a running experiment that
    became ready, as the CLI's loop does (never of a finished one: looking must not start anything)."""
    require_admin(session)
    checked = known(ctx, name)
    state = api.status(ctx.workspace, checked)
    if advance and state["state"] == "running":
        return api.advance(ctx.workspace, checked)
    return state


def stage_rows(state: dict[str, Any]) -> list[dict[str, str]]:
    """The stage view's rows: stage, state, progress, elapsed, ETA — as text a person reads."""
    rows = []
    for r in state.get("stages", []):
        st = r.get("state") or "pending"
        progress = r.get("progress") or 0.0
        eta = r.get("eta") if st == "running" else None
        rows.append({"stage": r.get("title") or r.get("id", ""), "state": f"{STATE_MARKS.get(st, '·')} {st}",
                     "progress": f"{100 * progress:.0f}%" if st in ("running", "done") else "",
                     "elapsed": human_seconds(r.get("elapsed")) if r.get("elapsed") is not None else "",
                     "ETA": human_seconds(eta) if eta is not None else ("…" if st == "running" else ""),
                     "_state": st, "_progress": f"{100 * min(max(progress, 0.0), 1.0):.0f}"})
    return rows


def stages_html(state: dict[str, Any] | None) -> str:
    """The stage table (read-only HTML in a box that scrolls sideways on a phone, never the page)."""
    if not state:
        return "<p class='obt-muted'>Choose or start an experiment to see its stages.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in STAGE_COLUMNS)
    body = []
    for row in stage_rows(state):
        bar = (f"<progress class='obt-meter' max='100' value='{row['_progress']}' aria-hidden='true'></progress>"
               if row["_state"] == "running" else "")
        cells = "".join(f"<td data-label='{col}'>{bar if col == 'progress' else ''}{html.escape(row[col])}</td>"
                        for col in STAGE_COLUMNS)
        body.append(f"<tr class='obt-stage obt-stage-{html.escape(row['_state'])}'>{cells}</tr>")
    return (f"<div class='obt-scroll'><table class='obt-table obt-stages'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def summary_line(state: dict[str, Any] | None) -> str:
    """One line above the stages: what the experiment is doing now (recomputed on every refresh, never stale)."""
    if not state:
        return ""
    st = state.get("state") or "pending"
    line = f"**{state['name']}** — {STATE_MARKS.get(st, '·')} {st}: {state['done']} of {state['total']} stages done"
    if st == "running":
        running = [r["title"] for r in state["stages"] if r["state"] == "running"]
        if running:
            line += f"; now: {', '.join(running)}"
        if state.get("elapsed"):
            line += f" ({human_seconds(state['elapsed'])} so far)"
    elif st == "done":
        line += ". The decision report is ready." if state.get("report") else "."
        if state.get("report_error"):
            line += f" The report could not be written: {state['report_error']}"
    elif st == "failed":
        failed = [r for r in state["stages"] if r["state"] == "failed"]
        reason = (failed[0].get("error") or "").splitlines()[0][:200] if failed else (state.get("error") or "")
        line += f". {failed[0]['title'] if failed else 'A stage'} failed: {reason}. Fix the cause and press Resume."
    elif st == "cancelled":
        line += ". Press Resume to go on (finished stages are kept)."
    return line


def log_job(state: dict[str, Any] | None) -> int | None:
    """Whose log the stage view shows: a running stage's job, else a failed one's, else the last job that ran."""
    if not state:
        return None
    stages = [r for r in state.get("stages", []) if r.get("job_id") is not None]
    for wanted in (("running",), ("failed",), ("queued",)):
        for r in stages:
            if r["state"] in wanted:
                return int(r["job_id"])
    return int(stages[-1]["job_id"]) if stages else None


def tail_lines(text: str, max_lines: int = LOG_LINES, max_line: int = MAX_LOG_LINE) -> str:
    """The END of a log: its last `max_lines` lines, each cut to its last `max_line` characters."""
    lines = (text or "").replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line if len(line) <= max_line else "…" + line[-max_line:] for line in lines[-max_lines:])


def job_log(ctx: AppContext, job_id: int | None, max_lines: int = LOG_LINES) -> tuple[str, str]:
    """(title, the end of the log) of a job."""
    from pipelines import jobs

    if job_id is None:
        return "", ""
    try:
        view = jobs.get(int(job_id), ctx.workspace)
    except NotFoundError:
        return "", ""
    return f"job {view.id} · {view.kind} · {view.state}", tail_lines(jobs.log_tail(view.log_path, max_lines=max_lines),
                                                                     max_lines)


def log_html(title: str, text: str, empty: str = "No log yet.") -> str:
    """A log box that opens scrolled to its end (CSS column-reverse), with the job it belongs to."""
    if not text:
        return f"<p class='obt-muted'>{html.escape(empty)}</p>"
    caption = f"<div class='obt-log-title'>{html.escape(title)} — last lines</div>" if title else ""
    return f"{caption}<div class='obt-log'><pre>{html.escape(text)}</pre></div>"


@dataclass(frozen=True)
class Actions:
    """Which buttons of the selected experiment apply now."""

    cancel: bool
    resume: bool
    report: bool
    study: bool


def actions(state: dict[str, Any] | None) -> Actions:
    if not state:
        return Actions(False, False, False, False)
    st = state.get("state")
    return Actions(cancel=st == "running", resume=st in ("failed", "cancelled"),
                   report=any(r["state"] == "done" for r in state.get("stages", [])),
                   study=bool(state.get("study")))


def cancel(ctx: AppContext, session: AdminSession, name: object) -> dict[str, Any]:
    require_admin(session)
    checked = known(ctx, name)
    state = api.status(ctx.workspace, checked)
    if state["state"] != "running":
        raise BadInputError(f"experiment {checked!r} is {state['state']}: there is nothing to cancel")
    return api.cancel(ctx.workspace, checked)


def resume(ctx: AppContext, session: AdminSession, name: object) -> dict[str, Any]:
    require_admin(session)
    checked = known(ctx, name)
    state = api.status(ctx.workspace, checked)
    if state["state"] not in ("failed", "cancelled"):
        raise BadInputError(f"experiment {checked!r} is {state['state']}: only a failed or cancelled one resumes")
    return api.resume(ctx.workspace, checked)


def create_study(ctx: AppContext, session: AdminSession, name: object, raters: object,
                 grow: object = True) -> dict[str, Any]:
    """The experiment's listening study with `raters` new invitations: link and completion code for each.

    `grow`: add blocks when the raters outnumber the design's free blocks (else a warning says how many would find
    no trials)."""
    from webapp.rating import completion_code

    require_admin(session)
    checked = known(ctx, name)
    count = _whole(raters, "number of raters", 1, 500, 1)
    made = api.create_study(ctx.workspace, checked, count or 1, grow=bool(grow))
    return {"study": made["study"], "warnings": made.get("warnings", []), "added_blocks": made.get("added_blocks", 0),
            "invites": [{"rater": m["pseudonym"], "link": ctx.config.invite_url(m["invite_token"]),
                         "code": completion_code(ctx.config.secret, m["invite_token"])} for m in made["invites"]]}


def capacity_note(made: dict[str, Any]) -> str:
    """What the study's capacity means for the new invitations: blocks added, or raters who would find no trials."""
    if made.get("warnings"):
        return "⚠ " + " ".join(made["warnings"]) + " — tick “Add blocks if needed” and invite again (-n 0 grows only)."
    if made.get("added_blocks"):
        return f"{made['added_blocks']} block(s) added to the design so that every invited rater gets trials."
    return ""


def invitations_html(study: str, invites: list[dict[str, str]]) -> str:
    """One card per invitation: the rater and their completion code, their link, a Copy button and a Share link.

    The buttons carry the link in a data attribute; `COPY_JS` (on the component) copies it and says "Copied".
    Cards, not a table: a link is long, and on a phone a table would scroll sideways.
    """
    if not invites:
        return ""
    items = []
    subject = quote("Invitation to a listening test")
    for inv in invites:
        link = html.escape(inv["link"], quote=True)
        body = quote(f"Please rate a few recordings for our listening test: {inv['link']}")
        items.append(
            "<li class='obt-invite'>"
            f"<div class='obt-invite-head'><b>{html.escape(inv['rater'])}</b>"
            f"<span class='obt-muted'>completion code <code>{html.escape(inv.get('code', ''))}</code></span></div>"
            f"<a class='obt-invite-link' href='{link}' target='_blank' rel='noopener noreferrer'>{link}</a>"
            f"<div class='obt-invite-actions'><button type='button' class='obt-copy' data-link='{link}'>Copy link"
            f"</button><a class='obt-share' data-link='{link}' href='mailto:?subject={subject}&amp;body={body}'>"
            "Share</a><span class='obt-copied' role='status' aria-live='polite'></span></div></li>")
    n = len(invites)
    return (f"<p class='obt-invites-intro'>Study <b>{html.escape(study)}</b>: {n} new invitation{'s' if n != 1 else ''}"
            ". Send each rater their own link (it is shown only now); a rater sees the completion code at the end."
            f"</p><ul class='obt-invites'>{''.join(items)}</ul>")


# Copy a link with the Clipboard API (or, on a page served over plain http from another host, where that API is
# missing, with a hidden textarea), then say so next to the button; Share opens the phone's share sheet if any.
COPY_JS = """
element.addEventListener('click', async (ev) => {
  const copy = ev.target.closest('button.obt-copy');
  const share = ev.target.closest('a.obt-share');
  if (share && navigator.share) {
    ev.preventDefault();
    try { await navigator.share({title: 'Listening test', url: share.dataset.link}); } catch (e) {}
    return;
  }
  if (!copy) return;
  const text = copy.dataset.link;
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch (e) {
    const area = document.createElement('textarea');
    area.value = text; area.setAttribute('readonly', ''); area.className = 'obt-offscreen';
    document.body.appendChild(area); area.select();
    try { ok = document.execCommand('copy'); } catch (e2) { ok = false; }
    area.remove();
  }
  const note = copy.closest('.obt-invite').querySelector('.obt-copied');
  if (note) note.textContent = ok ? 'Copied' : 'Select the link and copy it';
  copy.classList.toggle('obt-done', ok);
});
"""
