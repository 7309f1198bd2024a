"""Blinded A/B trial design: balanced blocks of pairs, randomised order and A/B position, P.808-style QC trials.

Every (utterance, pair of systems) is an item; each item is repeated in enough replicates that every
stimulus reaches the target number of ratings. A replicate is split into blocks of near-equal size
(one block = one rater's session), so no block holds an item twice. Within a block the A/B position
alternates per pair (balanced to ±1) before the order is shuffled. Each block also gets a hidden
attention check (natural speech against its degraded anchor) and one hidden repeat of an earlier trial
with the positions swapped.

Attention checks cycle through all utterances in shuffled rounds, so every utterance carries the same
number of checks (±1): which utterance a trial plays says nothing about its kind. (A smaller pool would
let each degraded clip recur as often as a regular clip, but then the pool's utterances — and their
common length — would mark attention checks; recurrence is visible only by comparing the sound of
downloads across raters, since each serve's samples differ, see obt_eval.study.serving.)
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from obt_eval.errors import BadInputError
from obt_eval.study.config import DesignConfig

KIND_REGULAR, KIND_ATTENTION, KIND_REPEAT = "regular", "attention", "repeat"
ANCHOR_SYSTEM = "anchor"


@dataclass(frozen=True, order=True)
class StimulusKey:
    """Which audio a slot plays: a system's clip of an utterance, or a QC variant of it."""

    system: str
    utterance: str
    variant: str = ""  # "" the clip itself, "anchor" its degraded version, "repeat-<n>" a copy with its own padding


@dataclass(frozen=True)
class TrialPlan:
    block: int
    seq: int
    kind: str
    utterance: str
    a: StimulusKey
    b: StimulusKey
    repeat_of: int | None = None  # index (in Design.trials) of the trial this one repeats


@dataclass
class Design:
    trials: list[TrialPlan]
    seed: int
    replicates: int
    blocks: int
    pairs: list[tuple[str, str]]
    summary: dict = field(default_factory=dict)

    @property
    def stimuli(self) -> list[StimulusKey]:
        return sorted({k for t in self.trials for k in (t.a, t.b)})


def _split(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (i < extra) for i in range(parts)]


def make_design(systems: list[str], utterances: list[str], config: DesignConfig = DesignConfig(),
                reference: str | None = None) -> Design:
    """Build the trial list. `systems` are the compared systems (the reference among them or not)."""
    if config.trials_per_block < 1 or config.target_ratings < 1:
        raise BadInputError("trials per block and target ratings must be at least 1", "check --block-size/--target")
    compared = [s for s in systems if s != reference or config.include_reference_in_pairs]
    if len(compared) < 2:
        raise BadInputError("the design needs at least two compared systems", "add another --system NAME=DIR")
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(compared, 2))
    items = [(u, p) for u in utterances for p in pairs]
    # Each clip sits in (k-1) pairs, so this many replicates give it `target_ratings` ratings.
    replicates = math.ceil(config.target_ratings / (len(compared) - 1))
    per_rep = math.ceil(len(items) / config.trials_per_block)
    natural = reference or systems[0]
    checks = _attention_utterances(utterances, replicates * per_rep * config.attention_per_block,
                                   np.random.default_rng([seed, 1]))
    trials: list[TrialPlan] = []
    block = 0
    for _ in range(replicates):
        order = rng.permutation(len(items))
        start = 0
        for size in _split(len(items), per_rep):
            chosen = [items[i] for i in order[start:start + size]]
            start += size
            mine = checks[block * config.attention_per_block:(block + 1) * config.attention_per_block]
            trials.extend(_block_trials(block, chosen, config, natural, mine, rng, len(trials)))
            block += 1
    design = Design(trials=trials, seed=int(seed), replicates=replicates, blocks=block, pairs=pairs)
    design.summary = summarise(design)
    return design


def _attention_utterances(utterances: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """`count` utterances for the attention checks: all utterances in shuffled rounds (each used equally, ±1).

    Its own generator, so the schedule depends on the seed only, not on the blocks' contents.
    """
    out: list[str] = []
    while len(out) < count:
        out.extend(str(utterances[i]) for i in rng.permutation(len(utterances)))
    return out[:count]


def _block_trials(block: int, items: list[tuple[str, tuple[str, str]]], config: DesignConfig, natural: str,
                  checks: list[str], rng: np.random.Generator, offset: int) -> list[TrialPlan]:
    # Positions: group by pair, alternate A/B with one running toggle (±1 per pair and overall).
    toggle = bool(rng.integers(2))
    oriented: list[tuple[str, StimulusKey, StimulusKey]] = []
    by_pair: dict[tuple[str, str], list[str]] = {}
    for u, pair in items:
        by_pair.setdefault(pair, []).append(u)
    for pair, utts in by_pair.items():
        for u in utts:
            x, y = StimulusKey(pair[0], u), StimulusKey(pair[1], u)
            oriented.append((u, x, y) if toggle else (u, y, x))
            toggle = not toggle
    rng.shuffle(oriented)
    slots: list[tuple] = [(KIND_REGULAR, u, a, b, None) for u, a, b in oriented]
    # Hidden repeats: copy an early regular trial, swap the positions, put it at least 3 trials later.
    for r in range(config.repeats_per_block if len(slots) >= 2 else 0):
        regular_now = [s for s in slots if s[0] == KIND_REGULAR]
        source = regular_now[int(rng.integers(0, max(1, len(regular_now) // 2)))]
        src_pos = next(i for i, s in enumerate(slots) if s is source)
        _, u, a, b, _ = source
        variant = f"repeat-{block}-{r}"
        at = int(rng.integers(min(src_pos + 3, len(slots)), len(slots) + 1))
        slots.insert(at, (KIND_REPEAT, u, StimulusKey(b.system, u, variant), StimulusKey(a.system, u, variant), source))
    for u in checks:
        nat, anc = StimulusKey(natural, u), StimulusKey(natural, u, ANCHOR_SYSTEM)
        a, b = (nat, anc) if rng.integers(2) else (anc, nat)
        slots.insert(int(rng.integers(0, len(slots) + 1)), (KIND_ATTENTION, u, a, b, None))
    position = {id(s): i for i, s in enumerate(slots)}
    out = []
    for seq, (kind, u, a, b, source) in enumerate(slots):
        repeat_of = offset + position[id(source)] if source is not None else None
        out.append(TrialPlan(block=block, seq=seq, kind=kind, utterance=u, a=a, b=b, repeat_of=repeat_of))
    return out


def summarise(design: Design) -> dict:
    """Counts that show the balance: ratings per stimulus, A/B positions per system, trials per block."""
    regular = [t for t in design.trials if t.kind == KIND_REGULAR]
    per_stimulus = Counter(k for t in regular for k in (t.a, t.b))
    pos_a = Counter(t.a.system for t in regular)
    pos_b = Counter(t.b.system for t in regular)
    per_block = Counter(t.block for t in design.trials)
    return {
        "seed": design.seed,
        "blocks": design.blocks,
        "replicates": design.replicates,
        "pairs": [list(p) for p in design.pairs],
        "trials": len(design.trials),
        "regular_trials": len(regular),
        "trials_per_block": [min(per_block.values()), max(per_block.values())] if per_block else [0, 0],
        "ratings_per_stimulus": [min(per_stimulus.values()), max(per_stimulus.values())] if per_stimulus else [0, 0],
        "position_a": dict(pos_a),
        "position_b": dict(pos_b),
    }
