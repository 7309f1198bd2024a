"""Render a study's audio: every clip trimmed, loudness-normalised and framed alike, under opaque ids.

Nothing written here names a system: files are ``audio/<random hex>.wav`` with no metadata chunk.
All clips of one utterance — each system's, the natural reference, the degraded anchor, hidden-repeat
copies — are trimmed by one rule and have one length and one fade, with their sound at one offset
(obt_eval.study.framing), so neither length nor silence nor envelope tells a system or a trial kind.
Each serve then draws the padding before the sound, lays a fresh noise floor under the whole clip and
varies gain and dither (obt_eval.study.serving): no digital silence is served and no two downloads
of a clip are alike. The files here are therefore never served as they are.
The key → id map (``plan.json``) is server-side only and makes a killed run resume with the same ids.

Before any of that, `measure_sources` measures every system's clip: one that cannot be read, holds NaN
samples, is silent, or would need more than the maximum gain to reach the loudness target (the rule
synthesize applies too) is refused by name — or, with ``allow_partial``, its utterance is left out for
every system — so no study plays a 40 dB-boosted noise floor to raters.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from obt_eval.atomic import read_json, write_json
from obt_eval.audio import load_audio, write_wav
from obt_eval.errors import BadInputError
from obt_eval.study.anchors import degrade
from obt_eval.study.config import AnchorConfig, LoudnessConfig, PaddingConfig
from obt_eval.study.design import ANCHOR_SYSTEM, StimulusKey
from obt_eval.study.framing import fade_window, frame_length, place, stored_lead, trim
from obt_eval.study.loudness import apply_gain, common_target, level_problem, loudness_lufs, peak_dbfs
from obt_eval.study.sources import SystemSource

_MIN_LOUDNESS_SECONDS = 0.4  # BS.1770 gating block: shorter trimmed clips are measured zero-padded to it
_LISTED = 10  # unusable clips listed in one error message (the rest are counted)


@dataclass(frozen=True)
class Level:
    """What the first pass learns about one distinct sound: loudness, peak and trimmed length."""

    loudness_lufs: float
    peak_dbfs: float
    num_samples: int


@dataclass
class RenderedStimulus:
    key: StimulusKey
    opaque_id: str
    path: Path
    sample_rate: int
    num_samples: int
    duration: float
    loudness_lufs: float
    source_loudness_lufs: float
    gain_db: float
    source_path: Path
    limited: bool


def _key_str(key: StimulusKey) -> str:
    return f"{key.system}\x1f{key.utterance}\x1f{key.variant}"


def _base(key: StimulusKey) -> StimulusKey:
    """The sound a stimulus is made from: repeat copies share their original's, anchors are their own."""
    return StimulusKey(key.system, key.utterance, key.variant if key.variant == ANCHOR_SYSTEM else "")


def _rng(key: StimulusKey, seed: int) -> np.random.Generator:
    # The anchor's noise depends only on (key, study seed): a resumed run writes the same audio.
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}|{_key_str(key)}".encode()).digest()[:8],
                                                "little"))


def _sound(key: StimulusKey, sources: dict[str, SystemSource], sample_rate: int, anchor: AnchorConfig,
           padding: PaddingConfig, seed: int) -> np.ndarray:
    """The trimmed, faded sound of a base key; the anchor degrades the trimmed natural clip."""
    wave = load_audio(sources[key.system].files[key.utterance], target_sr=sample_rate)
    if not np.isfinite(wave).all():
        raise BadInputError("it holds NaN or infinite samples")
    sound, span = trim(wave, sample_rate, padding)
    if key.variant == ANCHOR_SYSTEM:
        envelope = np.zeros(sound.size)
        envelope[span.loud_start:span.loud_end] = fade_window(span.loud_end - span.loud_start, sample_rate, padding)
        sound = degrade(sound, sample_rate, anchor, _rng(key, seed), noise_envelope=envelope)
        sound = sound * fade_window(sound.size, sample_rate, padding)
    return np.asarray(sound, dtype=np.float32)


def _loudness(sound: np.ndarray, sample_rate: int) -> float:
    short = int(_MIN_LOUDNESS_SECONDS * sample_rate) - sound.size
    if short > 0:
        sound = np.pad(sound, (short // 2, short - short // 2))
    return loudness_lufs(sound, sample_rate)


def _sample_rate(sources: dict[str, SystemSource]) -> int:
    # check_sources has made sure every clip of the study has this rate
    return next(iter(next(iter(sources.values())).sample_rates.values()))


def _measure(key: StimulusKey, sources: dict[str, SystemSource], sample_rate: int, loudness: LoudnessConfig,
             anchor: AnchorConfig, padding: PaddingConfig, seed: int) -> Level | str:
    """The level of a base key's sound, or why the clip cannot be in the study (named by the caller)."""
    try:
        sound = _sound(key, sources, sample_rate, anchor, padding, seed)
    except BadInputError as exc:
        return str(exc)
    except Exception as exc:  # soundfile raises several types for a file damaged after the scan
        return f"cannot be read ({type(exc).__name__}: {exc})"
    level = Level(_loudness(sound, sample_rate), peak_dbfs(sound), sound.size)
    return level_problem(level.loudness_lufs, loudness) or level


def _describe(key: StimulusKey, sources: dict[str, SystemSource], problem: str) -> str:
    what = f"the anchor of {key.utterance!r}" if key.variant == ANCHOR_SYSTEM else \
        f"system {key.system!r}, utterance {key.utterance!r}"
    return f"{what} ({sources[key.system].files[key.utterance]}): {problem}"


def _listed(lines: list[str]) -> str:
    more = f"\n  … and {len(lines) - _LISTED} more" if len(lines) > _LISTED else ""
    return "".join(f"\n  {line}" for line in lines[:_LISTED]) + more


def measure_sources(sources: dict[str, SystemSource], utterances: list[str],
                    loudness: LoudnessConfig = LoudnessConfig(), padding: PaddingConfig = PaddingConfig(),
                    allow_partial: bool = False, progress: bool = True,
                    ) -> tuple[list[str], list[str], dict[StimulusKey, Level]]:
    """Measure every system's clip of `utterances` once; refuse unusable clips by name.

    A clip is unusable when it cannot be read, holds NaN/inf samples, is silent, or would need more than
    ``loudness.max_gain_db`` to reach ``loudness.target_lufs``. Without `allow_partial` the study is
    refused with each such clip named (system, utterance, file, its loudness, the gain it would need);
    with it, their utterances are left out for every system (each trial compares one utterance across
    systems) and named in a warning. Returns (utterances kept, warnings, levels for `render_stimuli`).
    """
    sample_rate = _sample_rate(sources)
    levels: dict[StimulusKey, Level] = {}
    problems: dict[str, list[str]] = defaultdict(list)
    keys = [StimulusKey(name, uid, "") for uid in utterances for name in sources]
    for key in tqdm(keys, desc="loudness", disable=not progress):
        found = _measure(key, sources, sample_rate, loudness, AnchorConfig(), padding, 0)
        if isinstance(found, Level):
            levels[key] = found
        else:
            problems[key.utterance].append(_describe(key, sources, found))
    if not problems:
        return list(utterances), [], levels
    lines = [line for uid in utterances for line in problems.get(uid, [])]
    kept = [uid for uid in utterances if uid not in problems]
    if not allow_partial:
        raise BadInputError(
            f"{len(lines)} clip{'s' if len(lines) > 1 else ''} cannot be loudness-normalised for the study:"
            + _listed(lines),
            "re-synthesize or replace these clips (an untrained vocoder, a wrong or damaged file?), or pass "
            "--allow-partial to leave their utterances out of the study for every system")
    if not kept:
        raise BadInputError("no utterance is left once the unusable clips are left out:" + _listed(lines),
                            "re-synthesize or replace these clips")
    warning = (f"left out {len(problems)} utterance{'s' if len(problems) > 1 else ''} for every system, "
               f"because a clip cannot be loudness-normalised:" + _listed(lines))
    return kept, [warning], {k: v for k, v in levels.items() if k.utterance not in problems}


def render_stimuli(keys: list[StimulusKey], sources: dict[str, SystemSource], out_dir: Path, seed: int,
                   loudness: LoudnessConfig = LoudnessConfig(), anchor: AnchorConfig = AnchorConfig(),
                   progress: bool = True, padding: PaddingConfig = PaddingConfig(),
                   levels: dict[StimulusKey, Level] | None = None) -> tuple[list[RenderedStimulus], list[str]]:
    """Write every stimulus once, trimmed, normalised to one loudness target and framed; returns records and notes.

    `levels` are `measure_sources`' measurements (not measured again); any other sound is measured here,
    and an unusable one is refused by name.
    """
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    plan_path = out_dir / "plan.json"
    plan: dict[str, str] = read_json(plan_path) if plan_path.exists() else {}
    for key in keys:
        plan.setdefault(_key_str(key), secrets.token_hex(12))
    write_json(plan_path, plan)
    sample_rate = _sample_rate(sources)
    # Pass 1: loudness, peak and trimmed length of each distinct sound (repeat copies share their original's).
    base_keys = sorted({_base(k) for k in keys})
    measured: dict[StimulusKey, Level] = {}
    unusable = []
    for key in tqdm([k for k in base_keys if k not in (levels or {})], desc="loudness", disable=not progress):
        found = _measure(key, sources, sample_rate, loudness, anchor, padding, seed)
        if isinstance(found, Level):
            measured[key] = found
        else:
            unusable.append(_describe(key, sources, found))
    if unusable:
        raise BadInputError(f"{len(unusable)} clip{'s' if len(unusable) > 1 else ''} cannot be loudness-normalised:"
                            + _listed(unusable), "re-synthesize or replace these clips, or leave their utterances out")
    measured.update({k: (levels or {})[k] for k in base_keys if k not in measured})
    target, notes = common_target([m.loudness_lufs for m in measured.values()],
                                  [m.peak_dbfs for m in measured.values()], loudness)
    longest: dict[str, int] = defaultdict(int)
    for key, level in measured.items():
        longest[key.utterance] = max(longest[key.utterance], level.num_samples)
    lengths = {u: frame_length(n, sample_rate, padding) for u, n in longest.items()}
    # Pass 2: write each stimulus (skipping files a killed run already finished — writes are atomic).
    lead = stored_lead(sample_rate, padding)
    records = []
    for key in tqdm(keys, desc="stimuli", disable=not progress):
        base = _base(key)
        src_lufs = measured[base].loudness_lufs
        gain = target - src_lufs
        path = audio_dir / f"{plan[_key_str(key)]}.wav"
        limited = False
        if not path.exists():
            sound, limited = apply_gain(_sound(base, sources, sample_rate, anchor, padding, seed), gain,
                                        loudness.max_peak_dbfs)
            framed = place(sound, lead, lengths[key.utterance])
            write_wav(path, framed, sample_rate)
            if limited:
                notes.append(f"{key.system}/{key.utterance}: peaks limited at {loudness.max_peak_dbfs} dBFS")
        info = sf.info(str(path))
        records.append(RenderedStimulus(
            key=key, opaque_id=path.stem, path=path, sample_rate=int(info.samplerate), num_samples=int(info.frames),
            duration=float(info.duration), loudness_lufs=float(target), source_loudness_lufs=src_lufs,
            gain_db=float(gain), source_path=sources[key.system].files[key.utterance], limited=limited,
        ))
    return records, notes
