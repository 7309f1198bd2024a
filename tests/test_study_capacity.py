"""Study capacity: a rater invited beyond the study's blocks is told the study is full (no completion code for
zero trials); inviting beyond the blocks warns with the numbers; growing the study gives that rater trials."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select
from study_helpers import play_both
from typer.testing import CliRunner

from db.capacity import capacity, invite
from db.models import Block, Rating, Stimulus, System, Trial
from db.protocol import submit_rating
from db.studies import get_study
from webapp import rating as R
from webapp.config import load_config
from webapp.context import make_context
from webapp.sample import make_sample_study


@pytest.fixture
def three_blocks(workspace, monkeypatch):
    """A generated study of exactly three blocks, nobody invited yet; returns the app context."""
    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw")
    made = make_sample_study(workspace, utterances=6, seconds=0.3, raters=0, target_ratings=1, trials_per_block=2)
    assert made["summary"]["blocks"] == 3
    return make_context(load_config(workspace.root, start_worker=False))


def _invite(ctx, count: int, grow: bool = False):
    with ctx.db.session() as s:
        return invite(s, get_study(s, "pilot"), count, grow=grow)


def _join(ctx, token: str) -> R.Screen:
    session = R.RaterSession()
    assert R.open_invite(ctx, session, token).name == "profile"
    return R.save_profile(ctx, session, "Yes", "No", "pt", consent=True)


def _block_pairs(ctx, index: int) -> list[tuple[int, str, str, str]]:
    """(seq, utterance, system at A, system at B) of one block's trials."""
    with ctx.db.session() as s:
        rows = s.execute(select(Trial.seq, Trial.utterance, Rating.position, System.name)
                         .join(Block, Trial.block_id == Block.id).join(Rating, Rating.trial_id == Trial.id)
                         .join(Stimulus, Rating.stimulus_id == Stimulus.id)
                         .join(System, Stimulus.system_id == System.id)
                         .where(Block.index == index)).all()
    out: dict[int, dict] = {}
    for seq, utt, pos, system in rows:
        out.setdefault(seq, {"utt": utt})[pos] = system
    return [(seq, v["utt"], v["A"], v["B"]) for seq, v in sorted(out.items())]


def test_a_fourth_rater_on_a_three_block_study_is_told_it_is_full_and_gets_no_code(three_blocks):
    ctx = three_blocks
    first = _invite(ctx, 3)
    assert first.warnings == [] and first.capacity.spare == 0
    fourth = _invite(ctx, 1)
    assert len(fourth.invites) == 1 and fourth.added_blocks == 0
    assert fourth.capacity.blocks == 3 and fourth.capacity.waiting_raters == 4
    (warning,) = fourth.warnings
    assert "3 blocks" in warning and "4 raters" in warning and "1 of them" in warning and "--grow" in warning

    tokens = [i["invite_token"] for i in first.invites + fourth.invites]
    for token in tokens[:3]:
        screen = _join(ctx, token)
        assert screen.name == "trial" and screen.trial.number == 1
    screen = _join(ctx, tokens[3])
    assert screen.name == "full" and screen.code is None and screen.trial is None
    with ctx.db.session() as s:
        assert capacity(s, get_study(s, "pilot")).free_blocks == 0


def test_growing_the_study_gives_the_waiting_rater_trials_of_a_counterbalanced_copy(three_blocks):
    ctx = three_blocks
    tokens = [i["invite_token"] for i in _invite(ctx, 3).invites]
    for token in tokens:
        assert _join(ctx, token).name == "trial"
    grown = _invite(ctx, 1, grow=True)
    assert grown.added_blocks == 1 and grown.warnings == [] and grown.capacity.blocks == 4
    screen = _join(ctx, grown.invites[0]["invite_token"])
    assert screen.name == "trial" and screen.trial.number == 1
    original, copy = _block_pairs(ctx, 0), _block_pairs(ctx, 3)
    assert [(seq, utt) for seq, utt, _, _ in copy] == [(seq, utt) for seq, utt, _, _ in original]
    assert [(a, b) for _, _, a, b in copy] == [(b, a) for _, _, a, b in original]  # A and B swapped
    with ctx.db.session() as s:
        study = get_study(s, "pilot")
        assert study.design["grown_blocks"] == 1
        tokens_of = s.scalars(select(Trial.token)).all()
    assert len(set(tokens_of)) == len(tokens_of)  # the copy has fresh trial tokens


def test_a_rater_who_rated_something_still_gets_the_completion_code(three_blocks):
    ctx = three_blocks
    (token,) = [i["invite_token"] for i in _invite(ctx, 1).invites]
    session = R.RaterSession()
    R.open_invite(ctx, session, token)
    R.save_profile(ctx, session, "Yes", "No", "pt", consent=True)
    clock = dt.datetime.now(dt.UTC)
    screen = None
    for _ in range(20):
        if session.trial is None:
            break
        with ctx.db.session() as s:
            play_both(s, token, session.trial, clock)
            submit_rating(s, token, session.trial.trial_token, 3, 4, None, now=clock + dt.timedelta(seconds=5))
        clock += dt.timedelta(seconds=10)
        screen = R.load_trial(ctx, session)
    assert screen.name == "done" and screen.code == R.completion_code(ctx.config.secret, token)


def test_cli_invite_warns_with_numbers_and_grows_on_request(three_blocks, workspace):
    from obt_eval_cli.main import build_app

    common = ["--workspace", str(workspace.root), "--json"]
    runner = CliRunner()
    ok = runner.invoke(build_app(), ["study", "invite", "pilot", "-n", "3", *common])
    assert ok.exit_code == 0, ok.output
    assert "warning" not in ok.stderr
    over = runner.invoke(build_app(), ["study", "invite", "pilot", "-n", "2", *common])
    assert over.exit_code == 0, over.output
    summary = json.loads(over.stdout.strip().splitlines()[-1])
    assert summary["blocks"] == 3 and summary["waiting_raters"] == 5 and summary["added_blocks"] == 0
    assert "warning:" in over.stderr and "3 blocks" in over.stderr and "2 of them" in over.stderr
    assert "obt-eval study invite pilot -n 0 --grow" in over.stderr
    grown = runner.invoke(build_app(), ["study", "invite", "pilot", "-n", "0", "--grow", *common])  # as advised
    assert grown.exit_code == 0, grown.output
    summary = json.loads(grown.stdout.strip().splitlines()[-1])
    assert summary["invites"] == [] and summary["added_blocks"] == 2 and summary["blocks"] == 5
    assert summary["warnings"] == [] and "warning" not in grown.stderr
    grown = runner.invoke(build_app(), ["study", "invite", "pilot", "-n", "1", "--grow", *common])
    summary = json.loads(grown.stdout.strip().splitlines()[-1])
    assert summary["added_blocks"] == 1 and summary["blocks"] == 6 and summary["warnings"] == []
    human = runner.invoke(build_app(), ["study", "invite", "pilot", "-n", "1", "--workspace", str(workspace.root)])
    assert "7 raters, 6 blocks (6 free)" in human.stdout and "1 of them" in human.stderr
    refused = runner.invoke(build_app(), ["study", "invite", "pilot", "-n", "0", *common])
    assert refused.exit_code != 0 and "at least one rater" in refused.output + str(refused.exception)
