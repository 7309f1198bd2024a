"""Study capacity: how many raters a study's blocks can serve, inviting with that in mind, and growing the design.

Every rater needs at least one free block; a rater invited beyond the blocks gets no trial at all. Inviting
more raters than blocks therefore warns with the numbers, and the researcher may grow the study: new blocks
that replicate the existing ones (same utterance/system pairs, fresh tokens, A and B swapped in every other
round so presentation order stays counterbalanced).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Block, Rater, Rating, Study, Trial
from db.studies import invite_raters
from obt_eval.errors import BadInputError


@dataclass(frozen=True)
class Capacity:
    blocks: int  # blocks in the design
    free_blocks: int  # not assigned to anyone yet
    raters: int  # invited (not disabled)
    waiting_raters: int  # invited, no block yet

    @property
    def spare(self) -> int:
        """Raters that can still be invited before someone would find no block (negative: already short)."""
        return self.free_blocks - self.waiting_raters


@dataclass
class InviteResult:
    invites: list[dict[str, str]]
    capacity: Capacity  # after the invite (and the growth, if any)
    added_blocks: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        c = self.capacity
        return {"invites": self.invites, "blocks": c.blocks, "free_blocks": c.free_blocks, "raters": c.raters,
                "waiting_raters": c.waiting_raters, "added_blocks": self.added_blocks, "warnings": self.warnings}


def capacity(session: Session, study: Study) -> Capacity:
    blocks = session.scalar(select(func.count(Block.id)).where(Block.study_id == study.id)) or 0
    free = session.scalar(select(func.count(Block.id)).where(Block.study_id == study.id,
                                                             Block.rater_id.is_(None))) or 0
    raters = session.scalar(select(func.count(Rater.id)).where(Rater.study_id == study.id,
                                                               Rater.disabled.is_(False))) or 0
    with_block = session.scalar(select(func.count(func.distinct(Block.rater_id))).where(
        Block.study_id == study.id, Block.rater_id.is_not(None))) or 0
    return Capacity(int(blocks), int(free), int(raters), max(0, int(raters) - int(with_block)))


def shortfall_warning(study: Study, cap: Capacity) -> str | None:
    """The warning for a study whose waiting raters outnumber its free blocks (None when all can rate)."""
    short = -cap.spare
    if short <= 0:
        return None
    return (f"study {study.name!r} has {cap.blocks} blocks ({cap.free_blocks} free) for {cap.waiting_raters} "
            f"raters still waiting for trials: {short} of them will find no trials and see 'this study is full'. "
            f"Add the {short} missing block(s), repeating the design: obt-eval study invite {study.name} -n 0 --grow "
            "(or invite with --grow next time).")


def grow_study(session: Session, study: Study, blocks: int) -> int:
    """Add `blocks` new blocks replicating the existing ones in order (A/B swapped in odd rounds); returns count."""
    if blocks < 1:
        return 0
    if blocks > 10_000:
        raise BadInputError(f"cannot add {blocks} blocks at once", "grow by at most 10,000 blocks")
    originals = session.scalars(select(Block).where(Block.study_id == study.id).order_by(Block.index)).all()
    if not originals:
        raise BadInputError(f"study {study.name!r} has no blocks to replicate", "create the study again")
    design_blocks = int((study.design or {}).get("summary", {}).get("blocks") or 0) or len(originals)
    templates = originals[:design_blocks]
    next_index = max(b.index for b in originals) + 1
    for k in range(blocks):
        source = templates[(len(originals) + k) % len(templates)]
        swap = ((len(originals) + k) // len(templates)) % 2 == 1
        _copy_block(session, study, source, next_index + k, swap)
    design = dict(study.design or {})
    design["grown_blocks"] = int(design.get("grown_blocks", 0)) + blocks
    study.design = design  # a new dict: the JSON column notices the change
    session.flush()
    return blocks


def _copy_block(session: Session, study: Study, source: Block, index: int, swap: bool) -> None:
    new = Block(study_id=study.id, index=index)
    session.add(new)
    session.flush()
    trials = session.scalars(select(Trial).where(Trial.block_id == source.id).order_by(Trial.seq)).all()
    copies: dict[int, Trial] = {}
    for t in trials:
        row = Trial(study_id=study.id, block_id=new.id, seq=t.seq, kind=t.kind, utterance=t.utterance,
                    token=secrets.token_urlsafe(16))
        session.add(row)
        copies[t.id] = row
    session.flush()
    for t in trials:
        if t.repeat_of_id is not None and t.repeat_of_id in copies:
            copies[t.id].repeat_of_id = copies[t.repeat_of_id].id
        for rating in session.scalars(select(Rating).where(Rating.trial_id == t.id)):
            position = {"A": "B", "B": "A"}[rating.position] if swap else rating.position
            session.add(Rating(trial_id=copies[t.id].id, stimulus_id=rating.stimulus_id, position=position,
                               audio_token=secrets.token_urlsafe(16)))
    session.flush()


def invite(session: Session, study: Study, count: int, grow: bool = False) -> InviteResult:
    """Invite `count` raters; warn when some would find no block, or (grow) add the blocks they need.

    `count` 0 with `grow` only grows the study for the raters invited before."""
    if count == 0 and not grow:
        raise BadInputError("invite at least one rater", "pass --count N with N >= 1 (or -n 0 --grow to only grow)")
    invites = invite_raters(session, study, count) if count else []
    cap = capacity(session, study)
    added = grow_study(session, study, -cap.spare) if grow and cap.spare < 0 else 0
    if added:
        cap = capacity(session, study)
    warning = shortfall_warning(study, cap)
    return InviteResult(invites, cap, added, [warning] if warning else [])


def why_no_trial(session: Session, invite_token: str) -> str:
    """Why `next_trial` had nothing for this rater: 'done' (rated everything given), 'full' or 'closed'.

    Only 'done' earns a completion code: a rater who got no trial at all has completed nothing."""
    from db.studies import rater_by_token

    rater = rater_by_token(session, invite_token)
    rated = session.scalar(select(func.count(Trial.id)).where(Trial.rater_id == rater.id,
                                                             Trial.submitted_at.is_not(None))) or 0
    if rated:
        return "done"
    study = session.get(Study, rater.study_id)
    return "closed" if study is None or study.status != "open" else "full"
