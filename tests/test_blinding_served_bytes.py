"""Blinding side channels in the served bytes (issue 11 item 4): a download tells nothing but its sound.

A study is rendered from generated speech-like audio in which the systems differ in exactly the
packaging real pipelines leave behind (tests/blinding_helpers.py: one vocoder starts every clip with
150 ms of digital silence, one pads to whole frames, natural segments carry room tone before and after
the words; lengths differ), with the degraded anchor, attention checks and hidden repeats. Every trial
of several raters is served through the real path (`db.protocol.next_trial` → `audio_file` →
`webapp.audio.wav_bytes`), each clip twice (page and reload). From the bytes alone we compute what
anyone could: file and data length, header, runs of digital silence and of near-silence at both ends,
where sound starts, level and peak of the first and last 50 ms, how many other downloads (any rater)
have the same samples or mostly the same, and per trial whether the rater got the same samples or the
same pair of lengths before. A classifier given these features must do no better than chance at
telling the system, reference from vocoded, the degraded anchor (and which clip of an attention check
it is), an attention-check trial, or a hidden repeat.

Left out on purpose: the speech itself — its level, spectrum, words and timing — is what raters judge
(the anchor is degraded so that it sounds bad; a repeat is the same pair again). So the classifier is
trained on other clips than it is tested on (folds never share a clip's sound): recognising a clip it
was shown with its label is recognising the sound, not reading a side channel. An attacker is in that
position anyway — they never have labels for the study's own clips — and trains, if at all, on a study
of their own made with the same pipeline.

Chance tolerance: with balanced classes (chance p = 1/classes), the accuracy may exceed p by at most 3
binomial standard deviations, 3·sqrt(p(1-p)/n), where n counts distinct sounds (clips, or clip pairs
for trials), not serves: the serves of one clip are not independent draws. Data and serves are
seeded, so the outcome is the same on every run. On the code before this change these tests found the
system, reference vs vocoded, the anchor, the attention checks and the repeats with accuracy 0.96-1.00.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pytest
import soundfile as sf
from blinding_helpers import SR, write_packaged_sources
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select
from study_helpers import new_rater, play_both

from db import open_database
from db.models import Rating, Stimulus, System, Trial
from db.protocol import audio_file, next_trial, submit_rating
from db.studies import StimulusRecord, SystemRecord, TrialRecord, create_study
from obt_eval.study.config import DesignConfig
from obt_eval.study.prepare import prepare_study
from obt_eval.workspace import Workspace
from webapp.audio import wav_bytes

pytestmark = pytest.mark.slow  # renders and serves a 240-trial study (about a minute)

UTTERANCES = 16
QUIET = 10 ** (-40 / 20) * 32768  # a sample louder than -40 dBFS is sound, not padding
EDGE = int(0.05 * SR)  # the first / last 50 ms
Z = 3.0  # binomial standard deviations above chance allowed


# ---- what an attacker computes from one download ----

def _pcm(data: bytes) -> tuple[np.ndarray, int]:
    """The samples and where the data chunk starts, parsed from the RIFF bytes as any client would."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"data":
            return np.frombuffer(data[pos + 8:pos + 8 + size], dtype="<i2").astype(np.int64), pos + 8
        pos += 8 + size + (size % 2)
    raise AssertionError("no data chunk")


def _run(mask: np.ndarray) -> int:
    """Length of the leading run of True."""
    return int(np.argmin(mask)) if not mask.all() else int(mask.size)


def _db(x: float) -> float:
    return 20 * np.log10(max(x, 1e-3) / 32768)


_LENGTH, _ONSET = 2, 7  # positions in Serve.features


@dataclass
class Serve:
    data: bytes
    pcm: np.ndarray
    features: np.ndarray
    digest: str


def _serve(data: bytes) -> Serve:
    pcm, offset = _pcm(data)
    loud = np.flatnonzero(np.abs(pcm) > QUIET)
    first, last = (int(loud[0]), int(loud[-1])) if loud.size else (pcm.size, pcm.size)
    head, tail = pcm[:EDGE].astype(float), pcm[-EDGE:].astype(float)
    features = np.array([
        len(data), offset, pcm.size,
        _run(pcm == 0), _run(pcm[::-1] == 0),  # digital silence at each end
        _run(np.abs(pcm) <= 4), _run(np.abs(pcm[::-1]) <= 4),  # near-silence (silence plus dither)
        first / SR,  # where sound starts (where it stops follows from the length of the sound itself: content)
        _db(np.sqrt(np.mean(head**2))), _db(np.sqrt(np.mean(tail**2))),
        _db(np.max(np.abs(head))), _db(np.max(np.abs(tail))),
    ], dtype=float)
    return Serve(data, pcm, features, hashlib.sha256(pcm.tobytes()).hexdigest())


@dataclass
class ServedTrial:
    rater: int
    kind: str
    utterance: str
    systems: tuple[str, str]
    variants: tuple[str, str]
    serves: tuple[Serve, Serve]
    reloads: tuple[Serve, Serve]
    identity: dict = field(default_factory=dict)  # filled once everything is served
    max_equal: dict = field(default_factory=dict)  # per serve (0, 1 and reloads 2, 3): most equal other serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Render the study, then let raters work through it; every clip is served twice (page and reload)."""
    tmp = tmp_path_factory.mktemp("blind")
    dirs = write_packaged_sources(tmp / "wavs", UTTERANCES)
    design = DesignConfig(target_ratings=6, trials_per_block=6, attention_per_block=2, repeats_per_block=1,
                          seed=11)
    prepared = prepare_study("blind", [("voc150", dirs["voc150"]), ("vocframe", dirs["vocframe"])],
                             ("natural", dirs["natural"]), workspace=Workspace.at(tmp / "ws"), design=design,
                             progress=False)
    database = open_database(f"sqlite:///{tmp / 'study.db'}")  # the bytes, not the database, are under test
    with database.session() as s:
        create_study(s, prepared.name, prepared.protocol, prepared.design, prepared.settings,
                     str(prepared.stimuli_dir), prepared.sample_rate, [SystemRecord(**x) for x in prepared.systems],
                     [StimulusRecord(**x) for x in prepared.stimuli], [TrialRecord(**t) for t in prepared.trials])
    nonces = np.random.default_rng(5)
    clock = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    trials: list[ServedTrial] = []
    for rater in range(100):
        token = new_rater(database, "blind")
        got_any = False
        while True:
            with database.session() as s:
                view = next_trial(s, token, now=clock)
                if view is None:
                    break
                got_any = True
                trial = s.scalar(select(Trial).where(Trial.token == view.trial_token))
                systems, variants, serves, reloads = [], [], [], []
                for audio in (view.audio_a, view.audio_b):
                    rating = s.scalar(select(Rating).where(Rating.audio_token == audio))
                    stim = s.get(Stimulus, rating.stimulus_id)
                    systems.append(s.get(System, stim.system_id).name)
                    variants.append(stim.variant)
                    path = audio_file(s, token, audio)
                    serves.append(_serve(wav_bytes(path, nonce=nonces.bytes(16))))
                    reloads.append(_serve(wav_bytes(path, nonce=nonces.bytes(16))))
                trials.append(ServedTrial(rater, trial.kind, trial.utterance, tuple(systems), tuple(variants),
                                          tuple(serves), tuple(reloads)))
                play_both(s, token, view, clock)
                submit_rating(s, token, view.trial_token, 3, 3, None, now=clock + dt.timedelta(seconds=5))
            clock += dt.timedelta(seconds=10)
        if not got_any:
            break
    database.dispose()
    _identity_features(trials)
    return trials


def _identity_features(trials: list[ServedTrial]) -> None:
    """What comparing downloads tells. Per serve: how many other serves (any rater, any reload) have the
    same samples (hash), and how many have mostly the same (over half of the sound samples equal, the
    serve's own reload left out); per trial: whether the rater got either clip's samples before, and a
    pair of lengths they got before."""
    serves = [(i, j, sv) for i, t in enumerate(trials) for j, sv in enumerate(t.serves + t.reloads)]
    by_hash = Counter(sv.digest for _, _, sv in serves)
    by_len: dict[int, list[int]] = defaultdict(list)
    for n, (_, _, sv) in enumerate(serves):
        by_len[sv.pcm.size].append(n)
    twins: dict[int, set[int]] = {}
    for group in by_len.values():
        stack = np.stack([serves[n][2].pcm for n in group])
        for n in group:
            i, j, sv = serves[n]
            # equal samples where there is sound: two serves agree there only if they are one clip, unvaried
            sound = np.maximum(np.abs(stack), np.abs(sv.pcm)) > QUIET / 4
            equal = ((stack == sv.pcm) & sound).sum(axis=1) / np.maximum(sound.sum(axis=1), 1)
            others = [k for k, m in enumerate(group) if m != n]
            trials[i].max_equal[j] = float(equal[others].max()) if others else 0.0
            twins[n] = {group[k] for k in others if equal[k] > 0.5}
    index = {(i, j): n for n, (i, j, _) in enumerate(serves)}
    for n, (i, j, sv) in enumerate(serves):
        if j < 2:  # own reload left out: a reload is the one place an honest page serves a clip twice
            trials[i].identity[j] = (by_hash[sv.digest] - 1, len(twins[n] - {index[(i, j + 2)]}))
    seen: dict[int, set[int]] = defaultdict(set)
    seen_hashes: dict[int, set[str]] = defaultdict(set)
    seen_lengths: dict[int, set[tuple[int, int]]] = defaultdict(set)
    seen_utterances: dict[int, set[str]] = defaultdict(set)
    for i, t in enumerate(trials):
        a, b = t.serves
        mine = {index[(i, 0)], index[(i, 1)]}
        pair = tuple(sorted((a.pcm.size, b.pcm.size)))
        t.identity["hash_seen"] = float(a.digest in seen_hashes[t.rater] or b.digest in seen_hashes[t.rater])
        t.identity["samples_seen"] = float(bool((twins[index[(i, 0)]] | twins[index[(i, 1)]]) & seen[t.rater]))
        t.identity["lengths_seen"] = float(pair in seen_lengths[t.rater])
        t.identity["utterance_heard"] = t.utterance in seen_utterances[t.rater]  # what a listener knows
        seen[t.rater] |= mine
        seen_hashes[t.rater] |= {a.digest, b.digest}
        seen_lengths[t.rater].add(pair)
        seen_utterances[t.rater].add(t.utterance)


def _clip_row(t: ServedTrial, j: int) -> np.ndarray:
    return np.concatenate([t.serves[j].features, t.identity[j]])


def _trial_row(t: ServedTrial) -> np.ndarray:
    a, b = (_clip_row(t, 0), _clip_row(t, 1))
    ta, tb = t.serves[0].features, t.serves[1].features
    pair = [float(ta[_LENGTH] == tb[_LENGTH]), abs(ta[_LENGTH] - tb[_LENGTH]), abs(ta[_ONSET] - tb[_ONSET]),
            t.identity["hash_seen"], t.identity["samples_seen"], t.identity["lengths_seen"]]
    return np.concatenate([a, b, pair])


def _balanced(x, y, groups, seed: int = 0):
    """Subsample every class to the size of the smallest, so chance is 1/classes."""
    rng = np.random.default_rng(seed)
    n = min(Counter(y.tolist()).values())
    keep = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in np.unique(y)])
    return x[keep], y[keep], groups[keep]


def _assert_chance(name: str, x, y, groups) -> None:
    """Best accuracy of two classifiers, cross-validated with folds that never share a sound, is chance."""
    x, y, groups = _balanced(np.asarray(x, dtype=float), np.asarray(y), np.asarray(groups))
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    models = [make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
              make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))]
    acc = max(float(np.mean(cross_val_predict(m, x, y, groups=groups, cv=folds) == y)) for m in models)
    chance, n = 1 / len(np.unique(y)), len(set(groups.tolist()))
    bound = chance + Z * np.sqrt(chance * (1 - chance) / n)
    print(f"\n{name}: accuracy {acc:.3f} on {len(y)} serves of {n} sounds, chance {chance:.3f}, "
          f"allowed up to {bound:.3f}")
    assert acc <= bound, f"{name}: a classifier on the served bytes scores {acc:.3f} > {bound:.3f} ({chance=:.3f})"


def _sound(t: ServedTrial, j: int) -> str:
    """Which sound a clip plays: a hidden repeat's copy plays its original's."""
    return f"{t.systems[j]}/{t.utterance}/{'anchor' if t.variants[j] == 'anchor' else ''}"


def _pair(t: ServedTrial) -> str:
    return "+".join(sorted((_sound(t, 0), _sound(t, 1))))


def _regular_clips(trials):
    return [(t, j) for t in trials if t.kind == "regular" for j in (0, 1)]


def test_the_study_served_what_the_classifiers_need(served):
    kinds = Counter(t.kind for t in served)
    raters = {t.rater for t in served}
    assert kinds["regular"] == 144 and kinds["attention"] == 48 and kinds["repeat"] == 24 and len(raters) >= 2
    assert Counter(s for t in served if t.kind == "regular" for s in t.systems) == {
        "natural": 96, "voc150": 96, "vocframe": 96}


def test_bytes_do_not_tell_the_system(served):
    clips = _regular_clips(served)
    _assert_chance("system (3 classes)", [_clip_row(t, j) for t, j in clips], [t.systems[j] for t, j in clips],
                   [_sound(t, j) for t, j in clips])


def test_bytes_do_not_tell_reference_from_vocoded(served):
    clips = _regular_clips(served)
    _assert_chance("reference vs vocoded", [_clip_row(t, j) for t, j in clips],
                   [t.systems[j] == "natural" for t, j in clips], [_sound(t, j) for t, j in clips])


def test_bytes_do_not_tell_the_anchor(served):
    clips = [(t, j) for t in served for j in (0, 1)]
    _assert_chance("anchor vs any other clip", [_clip_row(t, j) for t, j in clips],
                   [t.variants[j] == "anchor" for t, j in clips], [_sound(t, j) for t, j in clips])


def test_bytes_do_not_tell_which_clip_of_an_attention_check_is_the_anchor(served):
    checks = [t for t in served if t.kind == "attention"]
    # which of the two clips of an attention check is the degraded one: A's features minus B's
    _assert_chance("anchor position in an attention check", [_clip_row(t, 0) - _clip_row(t, 1) for t in checks],
                   [t.variants[0] == "anchor" for t in checks], [_pair(t) for t in checks])


def test_bytes_do_not_tell_an_attention_check(served):
    trials = [t for t in served if t.kind in ("regular", "attention")]
    _assert_chance("attention check vs regular trial", [_trial_row(t) for t in trials],
                   [t.kind == "attention" for t in trials], [_pair(t) for t in trials])


def test_bytes_do_not_tell_a_repeat(served):
    # A repeat is by definition an utterance the rater has heard before (the same pair again), and all
    # clips of an utterance share one length, so compare it with regular trials of utterances the rater
    # has also heard before: the bytes must add nothing to what the ears know.
    trials = [t for t in served if t.kind == "repeat" or (t.kind == "regular" and t.identity["utterance_heard"])]
    assert Counter(t.kind for t in trials)["regular"] >= 12
    _assert_chance("repeat vs regular trial of an utterance heard before", [_trial_row(t) for t in trials],
                   [t.kind == "repeat" for t in trials], [_pair(t) for t in trials])


def test_no_two_serves_share_their_samples(served):
    """Not across raters, not on a reload, not a hidden repeat and its original: every download is new."""
    digests = [sv.digest for t in served for sv in t.serves + t.reloads]
    assert len(set(digests)) == len(digests)
    same_clip = [(a.pcm, b.pcm) for t in served for a, b in zip(t.serves, t.reloads, strict=True)]
    assert all(not np.array_equal(a, b) for a, b in same_clip)
    # not even mostly: at most a few low-level samples agree by chance
    assert max(v for t in served for v in t.max_equal.values()) < 0.5


def test_served_bytes_decode_as_plain_wav(served):
    data = served[0].serves[0].data
    info = sf.info(io.BytesIO(data))
    assert info.samplerate == SR and info.channels == 1 and info.subtype == "PCM_16"
    assert b"LIST" not in data and b"JUNK" not in data and len(data) == 44 + 2 * info.frames
    longest_silence = max(_longest_zero_run(sv.pcm) for t in served for sv in t.serves + t.reloads)
    assert longest_silence < 8  # no digital silence anywhere (a 150 ms run was 2400 samples)


def _longest_zero_run(pcm: np.ndarray) -> int:
    edges = np.diff(np.concatenate([[0], (pcm == 0).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max()) if starts.size else 0
