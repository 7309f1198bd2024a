"""The Admin tab's experiment helpers without a browser: form checks, the stage view's text, the log's end,
the report embedding (nothing outside the report's folder), and every callback refusing a session without login."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from obt_eval.errors import BadInputError, NotFoundError
from webapp import admin as A
from webapp import experiments as E
from webapp.auth import AdminSession, NotAuthorised
from webapp.report_view import confined_file, embed_report, report_view

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
                       "AAAABJRU5ErkJggg==")  # a 1 x 1 pixel


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    from webapp.config import load_config
    from webapp.context import make_context

    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw-for-tests")
    monkeypatch.delenv("OBT_EVAL_DATA_ROOTS", raising=False)
    return make_context(load_config(tmp_path / "ws", "127.0.0.1", 7860, False))


@pytest.fixture
def researcher():
    return AdminSession(user="admin")


# --- the stage view's text ---------------------------------------------------------------------------------


def test_durations_read_like_a_person_would_say_them():
    assert [E.human_seconds(s) for s in (0.4, 3, 59.6, 65, 3599, 7440)] == [
        "0 s", "3 s", "1 min 00 s", "1 min 05 s", "59 min 59 s", "2 h 04 min"]
    assert E.human_seconds(None) == E.human_seconds(-1) == E.human_seconds(float("nan")) == "—"


def _state(*stages: dict, **extra) -> dict:
    base = {"name": "x", "state": "running", "done": 0, "total": len(stages), "stages": list(stages), "study": None}
    return base | extra


def _stage(sid: str, state: str, **kw) -> dict:
    return {"id": sid, "title": f"title of {sid}", "state": state, "progress": kw.pop("progress", 0.0),
            "elapsed": kw.pop("elapsed", None), "eta": kw.pop("eta", None), "job_id": kw.pop("job_id", None), **kw}


def test_stage_rows_show_progress_elapsed_and_eta_only_where_they_mean_something():
    rows = E.stage_rows(_state(_stage("a", "done", progress=1.0, elapsed=5.1, job_id=1),
                               _stage("b", "running", progress=0.4, elapsed=12.3, eta=18.6, job_id=2),
                               _stage("c", "running", progress=0.0, elapsed=None, job_id=3),
                               _stage("d", "pending")))
    assert [(r["stage"], r["state"], r["progress"], r["elapsed"], r["ETA"]) for r in rows] == [
        ("title of a", "✓ done", "100%", "5 s", ""),
        ("title of b", "▶ running", "40%", "12 s", "19 s"),
        ("title of c", "▶ running", "0%", "", "…"),  # running, no estimate yet
        ("title of d", "· pending", "", "", ""),
    ]
    table = E.stages_html(_state(_stage("b", "running", progress=0.4, job_id=2), _stage("<x>", "pending")))
    assert "<progress" in table and "title of &lt;x&gt;" in table and "<x>" not in table
    assert "obt-scroll" in table  # wide on a phone: it scrolls in its own box


def test_the_log_shows_its_end_not_its_beginning():
    text = "\n".join(f"line {i}" for i in range(100)) + "\n\n"
    tail = E.tail_lines(text, max_lines=30)
    assert tail.splitlines()[0] == "line 70" and tail.splitlines()[-1] == "line 99"
    long = E.tail_lines("x" * 1000 + "END", max_lines=5, max_line=50)
    assert long.endswith("END") and len(long) == 51
    html = E.log_html("job 3", "a < b\nlast")
    assert "a &lt; b" in html and "obt-log" in html
    assert "No log yet" in E.log_html("", "")


def test_the_log_shown_is_the_running_stage_else_the_failed_else_the_last():
    done, failed = _stage("a", "done", job_id=1), _stage("b", "failed", job_id=2)
    running, later = _stage("c", "running", job_id=3), _stage("d", "done", job_id=4)
    assert E.log_job(_state(done, failed, running, later)) == 3
    assert E.log_job(_state(done, failed, later)) == 2
    assert E.log_job(_state(done, later, _stage("e", "pending"))) == 4
    assert E.log_job(_state(_stage("local", "done"))) is None and E.log_job(None) is None


def test_buttons_apply_only_when_the_action_does():
    assert E.actions(None) == E.Actions(False, False, False, False)
    running = E.actions(_state(_stage("a", "done"), _stage("b", "running")))
    assert (running.cancel, running.resume, running.report, running.study) == (True, False, True, False)
    failed = E.actions(_state(_stage("a", "failed"), state="failed"))
    assert (failed.cancel, failed.resume, failed.report) == (False, True, False)
    done = E.actions(_state(_stage("a", "done"), state="done", study="x"))
    assert (done.cancel, done.resume, done.report, done.study) == (False, False, True, True)


def test_the_summary_line_says_what_happens_now():
    line = E.summary_line(_state(_stage("a", "done"), _stage("b", "running"), done=1, elapsed=65))
    assert "running: 1 of 2 stages done" in line and "now: title of b" in line and "1 min 05 s" in line
    failed = E.summary_line(_state(_stage("a", "failed", error="Boom happened\ntrace"), state="failed"))
    assert "title of a failed: Boom happened" in failed and "trace" not in failed and "Resume" in failed


# --- the form ----------------------------------------------------------------------------------------------


def test_encoder_labels_show_name_size_and_licence():
    labels = dict((name, label) for label, name in E.encoder_choices())
    assert labels["mms-300m"] == "mms-300m · 315M · CC-BY-NC-4.0"
    assert labels["xlsr53"] == "xlsr53 · 315M · Apache-2.0"
    assert labels["mfcc"] == "mfcc · no weights · baseline"
    assert E.encoder_label({"name": "big", "params_millions": 1500, "licence": "MIT"}) == "big · 1.5B · MIT"


def test_layers_and_k_values_are_checked_with_a_hint():
    assert E.check_layers(" Auto ") == "auto" and E.check_layers("") == "default"
    assert E.check_layers("12 - 18") == "12-18" and E.check_layers("6,9-11") == "6,9-11"
    with pytest.raises(BadInputError, match="runs backwards"):
        E.check_layers("18-12")
    with pytest.raises(BadInputError, match="not default, auto"):
        E.check_layers("all of them")
    assert E.parse_ks("100, 150,200,100") == [100, 150, 200]
    for bad in ("fifty", "1", "", "100,20000", ",".join(["5"] * 3 + [str(k) for k in range(10, 30)])):
        with pytest.raises(BadInputError):
            E.parse_ks(bad)
    with pytest.raises(BadInputError, match="longer than"):
        E.parse_ks("1" * 5000)


def _form(**kw) -> dict:
    values = E.form_values("demo")
    values.update(kw)
    return values


def test_the_demo_preset_fills_the_form_and_the_form_overrides_it(ctx):
    values = E.form_values("demo")
    assert values["encoders"] == ["mfcc", "logmel"] and values["ks"] == "50" and values["vocoder_preset"] == "tiny"
    options = E.options_from_form(ctx, _form(vocoder_steps=5.0, study_utterances=2.0, name="quick"))
    assert (options.name, options.vocoder_steps, options.study_utterances) == ("quick", 5, 2)
    assert options.demo_corpus is not None and options.kmeans_sample_frac == 1.0  # the preset's hidden settings
    with pytest.raises(BadInputError, match="no corpus 'elsewhere'"):  # another corpus: not generated, must exist
        E.options_from_form(ctx, _form(corpus="elsewhere"))
    with pytest.raises(BadInputError, match="unknown encoder"):
        E.options_from_form(ctx, _form(encoders=["mfcc", "../../etc"]))
    with pytest.raises(BadInputError, match="choose at least one encoder"):
        E.options_from_form(ctx, _form(encoders=[]))
    with pytest.raises(BadInputError, match="whole number from 2 to 300"):
        E.options_from_form(ctx, _form(study_utterances=1000))
    with pytest.raises(BadInputError, match="cannot be used as a folder name"):
        E.options_from_form(ctx, _form(name="../evil"))


def test_other_encoders_are_hub_ids_or_checkpoint_folders_the_app_may_read(ctx, tmp_path):
    assert E.form_values("demo")["other_encoders"] == "" and E.form_values(None)["other_encoders"] == ""
    folder = Path(ctx.workspace.root) / "checkpoints" / "my-hubert"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    options = E.options_from_form(ctx, _form(other_encoders=" utter-project/mHuBERT-147 , checkpoints/my-hubert,"))
    assert options.encoders == ["mfcc", "logmel", "utter-project/mHuBERT-147", str(folder.resolve())]
    outside = tmp_path / "elsewhere" / "ckpt"
    outside.mkdir(parents=True)
    (outside / "config.json").write_text("{}")
    empty = Path(ctx.workspace.root) / "checkpoints" / "empty"
    empty.mkdir()
    for text, reason in ((str(outside), "outside the workspace"), ("../../etc", "outside the workspace"),
                         ("just-a-name", "neither a Hugging Face id nor a folder"),
                         (str(empty), "no config.json"), (str(folder / "missing"), "no checkpoint folder")):
        with pytest.raises(BadInputError, match=reason):
            E.options_from_form(ctx, _form(other_encoders=text))
    with pytest.raises(BadInputError, match="at most 12 encoders"):
        E.options_from_form(ctx, _form(other_encoders=", ".join(f"org/model-{i}" for i in range(11))))


def test_a_corpus_shows_its_size_in_the_dropdown(ctx, researcher):
    folder = Path(ctx.workspace.root) / "corpora" / "satere"
    folder.mkdir(parents=True)
    (folder / "corpus.json").write_text(json.dumps({"utterances": 120, "hours": 0.5, "speakers": 3}))
    assert E.corpus_choices(ctx, researcher) == [("satere · 120 utterances · 30 min 00 s · 3 speakers", "satere")]
    assert E.corpus_choices(ctx, researcher, "demo")[0][1] == "demo"  # the preset's corpus, generated on the run


# --- experiments by name -------------------------------------------------------------------------------------


def test_an_experiment_name_from_the_page_is_never_a_path(ctx, researcher):
    root = Path(ctx.workspace.root)
    for name in ("../../etc", "/tmp/x", "nope", "", None, 5):
        with pytest.raises((BadInputError, NotFoundError)):
            E.status(ctx, researcher, name)
        with pytest.raises((BadInputError, NotFoundError)):
            E.cancel(ctx, researcher, name)
    assert not (root / "experiments").exists()  # nothing was created on the way


# --- the report embedding ------------------------------------------------------------------------------------


def _report_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "experiments" / "x" / "report"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "abx.png").write_bytes(PNG)
    (folder / "report.json").write_text("{}")
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"SECRET")
    os.symlink(secret, folder / "figures" / "sneaky.png")
    return folder


def test_the_embedded_report_reads_nothing_outside_its_folder(tmp_path):
    folder = _report_folder(tmp_path)
    inline = "data:image/png;base64," + base64.b64encode(PNG).decode()
    page = (f"<html><head><title>t</title><style>.obt-report h1{{color:red}}</style></head><body>"
            f"<div class='obt-report'><h1 onclick='alert(1)'>Report</h1><img src='{inline}' alt='kept'>"
            "<img src='figures/abx.png' alt='inlined'><img src='../../secret.png' alt='up'>"
            f"<img src='{tmp_path / 'secret.png'}' alt='absolute'><img src='figures/sneaky.png' alt='symlink'>"
            "<img src='https://evil.example/x.png' alt='remote'>"
            "<script>alert(2)</script><iframe src='x'></iframe>"
            "<a href='javascript:alert(3)'>js</a><a href='report.json'>json</a><a href='../plan.json'>up</a>"
            "<a href='https://example.org/paper'>paper</a></div></body></html>")
    minted = []

    def link_for(path: Path) -> str:
        minted.append(path)
        return "download/token123"

    body, dropped = embed_report(page, folder, link_for)
    secret_b64 = base64.b64encode(PNG + b"SECRET").decode()
    assert secret_b64 not in body
    assert body.count("<img") == 2 and inline in body  # the inline one kept, abx.png inlined
    assert body.count(inline) == 2
    assert body.count("[figure not available]") == 4
    assert "<script" not in body and "alert" not in body and "<iframe" not in body and "onclick" not in body
    assert 'href="download/token123" download' in body and minted == [(folder / "report.json").resolve()]
    assert "plan.json" not in body and 'href="https://example.org/paper"' in body
    assert "<style>.obt-report h1{color:red}</style>" in body and "<title>" not in body
    assert any("secret.png" in d for d in dropped) and any("sneaky" in d for d in dropped)


def test_a_stylesheet_that_could_fetch_or_break_out_is_dropped(tmp_path):
    folder = _report_folder(tmp_path)
    for css in ("h1{background:url(https://evil.example/x)}", "@import 'x.css';"):
        body, _ = embed_report(f"<style>{css}</style><body><p>hi</p></body>", folder)
        assert "<style>" not in body and "<p>hi</p>" in body


def test_report_files_are_confined_to_the_report_folder(tmp_path):
    folder = _report_folder(tmp_path)
    assert confined_file(folder, "figures/abx.png") == (folder / "figures" / "abx.png").resolve()
    for ref in ("../../secret.png", str(tmp_path / "secret.png"), "figures/sneaky.png", "figures", "",
                "file:///etc/passwd", "missing.png", "~/x"):
        with pytest.raises(BadInputError):
            confined_file(folder, ref)


# --- login ---------------------------------------------------------------------------------------------------


def test_every_researcher_action_refuses_a_session_without_login(ctx):
    nobody = AdminSession()
    calls = [
        lambda: E.run(ctx, nobody, _form()), lambda: E.status(ctx, nobody, "demo"),
        lambda: E.cancel(ctx, nobody, "demo"), lambda: E.resume(ctx, nobody, "demo"),
        lambda: E.create_study(ctx, nobody, "demo", 3), lambda: E.experiments_table(ctx, nobody),
        lambda: E.experiment_names(ctx, nobody), lambda: E.corpus_choices(ctx, nobody),
        lambda: report_view(ctx, nobody, "demo"), lambda: A.job_actions(ctx, nobody, 1),
        lambda: A.data_roots_text(ctx, nobody), lambda: A.job_template(nobody, "selftest"),
        lambda: A.register_corpus(ctx, nobody, "/tmp", "c", "", "", True),
    ]
    for call in calls:
        with pytest.raises(NotAuthorised):
            call()
    assert not (Path(ctx.workspace.root) / "experiments").exists()


# --- ingest and the job console ------------------------------------------------------------------------------


def test_ingest_outside_the_data_roots_names_the_setting(ctx, researcher, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(BadInputError) as info:
        A.register_corpus(ctx, researcher, str(outside), "c1", "", "")
    assert "outside the folders this app may read" in str(info.value)
    assert f"OBT_EVAL_DATA_ROOTS={outside}" in str(info.value)
    inside = Path(ctx.workspace.root) / "uploads" / "rec"
    inside.mkdir(parents=True)
    job = A.register_corpus(ctx, researcher, str(inside), "c1", "", "", True, 3.0, 20.0, "energy")
    assert job.params["segment"] is True and (job.params["segment_min"], job.params["segment_max"]) == (3.0, 20.0)
    assert job.params["vad"] == "energy"
    with pytest.raises(BadInputError, match="segment_max"):
        A.register_corpus(ctx, researcher, str(inside), "c2", "", "", True, 3.0, -1.0, "silero")
    assert "OBT_EVAL_DATA_ROOTS" in A.data_roots_text(ctx, researcher)


def test_the_job_console_starts_from_a_valid_template_and_arms_nothing_without_a_job(ctx, researcher):
    template, help_text = A.job_template(researcher, A.DEFAULT_KIND)
    assert json.loads(template) == {"seconds": 3.0, "fail": False} and "selftest" in help_text
    assert json.loads(A.job_template(researcher, "extract", "demo")[0])["corpus"] == "demo"
    assert A.job_actions(ctx, researcher, None) == (False, False)
    job = A.launch(ctx, researcher, "selftest", template)
    assert A.job_actions(ctx, researcher, job.id) == (True, False)  # queued: cancel applies
    A.cancel(ctx, researcher, job.id)
    assert A.job_actions(ctx, researcher, job.id) == (False, True)


def test_invitations_carry_their_link_for_copy_and_share():
    made = E.invitations_html("s1", [{"rater": "r-1", "link": "http://h/?invite=a'b<c", "code": "AAAA"},
                                     {"rater": "r-2", "link": "http://h/?invite=zz", "code": "BBBB"}])
    assert made.count("class='obt-copy'") == 2 and made.count("class='obt-share'") == 2
    assert "a&#x27;b&lt;c" in made and "a'b<c" not in made
    assert "mailto:?subject=" in made and "2 new invitations" in made


def test_an_experiment_from_the_form_is_followed_cancelled_and_resumed_without_a_worker(ctx, researcher,
                                                                                         monkeypatch):
    from pipelines.experiments import api

    advanced = []
    real_advance = api.advance
    monkeypatch.setattr(api, "advance", lambda ws, name: advanced.append(name) or real_advance(ws, name))
    name = E.run(ctx, researcher, _form(name="first", vocoder_steps=5, study_utterances=2))
    assert name == "first" and E.experiment_names(ctx, researcher) == ["first"]
    state = E.status(ctx, researcher, "first", advance=True)
    assert state["state"] == "running" and advanced == ["first"]  # a running one is moved on, as the CLI does
    rows = E.stage_rows(state)
    assert rows[0]["stage"] == "generate and ingest the corpus" and len(rows) == state["total"]
    assert E.actions(state) == E.Actions(cancel=True, resume=False, report=False, study=False)
    with pytest.raises(BadInputError, match="has no study yet"):
        E.create_study(ctx, researcher, "first", 2)
    with pytest.raises(BadInputError, match="only a failed or cancelled one resumes"):
        E.resume(ctx, researcher, "first")
    assert E.cancel(ctx, researcher, "first")["state"] == "cancelled"
    state = E.status(ctx, researcher, "first", advance=True)
    assert state["state"] == "cancelled" and advanced == ["first"]  # looking at a stopped one starts nothing
    assert E.actions(state).resume and not E.actions(state).cancel
    assert "Resume" in E.summary_line(state)
    assert E.resume(ctx, researcher, "first")["state"] == "running"
    table = E.experiments_table(ctx, researcher)
    assert table.iloc[0]["experiment"] == "first" and table.iloc[0]["state"] == "running"


def test_a_callback_error_becomes_a_message_beside_its_button_never_a_traceback():
    from webapp.experiment_panel import guarded

    @guarded("msg")
    def bad_input():
        raise BadInputError("k 'x' is not a number", "write e.g. 100")

    @guarded("msg")
    def not_logged_in():
        raise NotAuthorised("researchers only", "log in on the Admin tab")

    @guarded("msg")
    def bug():
        raise KeyError("/secret/path")

    assert bad_input() == {"msg": "⚠ k 'x' is not a number — write e.g. 100"}
    assert not_logged_in() == {"msg": "⚠ researchers only — log in on the Admin tab"}
    assert "KeyError" in bug()["msg"] and "/secret/path" not in bug()["msg"]


def test_the_study_note_says_what_capacity_means_for_the_invitations():
    warned = {"warnings": ["study 'x' has 3 blocks (0 free) for 1 raters still waiting ... --grow"], "added_blocks": 0}
    assert E.capacity_note(warned).startswith("⚠ study 'x' has 3 blocks") and "Add blocks if needed" in E.capacity_note(
        warned)
    assert E.capacity_note({"warnings": [], "added_blocks": 2}).startswith("2 block(s) added")
    assert E.capacity_note({"warnings": [], "added_blocks": 0}) == ""
