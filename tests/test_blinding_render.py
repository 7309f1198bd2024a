"""Rendering on one footing (obt_eval.study.render/framing): trimmed alike, one length per utterance, one offset."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import soundfile as sf
from blinding_helpers import SR, speech_like, write_packaged_sources

from obt_eval.study.config import DesignConfig, PaddingConfig
from obt_eval.study.design import KIND_ATTENTION, make_design
from obt_eval.study.framing import sound_span, stored_lead, trim
from obt_eval.study.loudness import integrated_loudness
from obt_eval.study.prepare import prepare_study
from obt_eval.workspace import Workspace

PAD = PaddingConfig()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("render")
    dirs = write_packaged_sources(tmp / "wavs", 5)
    return prepare_study("frame", [("voc150", dirs["voc150"]), ("vocframe", dirs["vocframe"])],
                         ("natural", dirs["natural"]), workspace=Workspace.at(tmp / "ws"),
                         design=DesignConfig(target_ratings=2, trials_per_block=4, seed=2), progress=False)


def _first_sound(wave: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(wave) > 0)[0])


def test_every_clip_of_an_utterance_has_one_length(prepared):
    lengths = defaultdict(set)
    for stim in prepared.stimuli:
        frames = sf.info(stim["audio_path"]).frames
        assert frames == stim["num_samples"]
        lengths[stim["utterance"]].add(frames)
    assert all(len(v) == 1 for v in lengths.values()), lengths  # systems, anchor, repeats alike
    variants = Counter(s["variant"].split("-")[0] for s in prepared.stimuli)
    assert variants["anchor"] and variants["repeat"]  # the check covered the QC clips too
    assert prepared.settings["padding"] == {**PAD.__dict__}


def test_the_vocoder_silence_is_trimmed_and_every_sound_starts_at_one_offset(prepared):
    """Whatever a system put before its words (150 ms of zeros, room tone, nothing), the stored sound
    starts at the same offset and the words after it at nearly the same time for every system."""
    onsets = defaultdict(dict)
    for stim in prepared.stimuli:
        wave, _ = sf.read(stim["audio_path"], dtype="float64")
        assert _first_sound(wave) >= stored_lead(SR, PAD)  # nothing before the common offset
        loud = np.flatnonzero(np.abs(wave) > 0.1 * np.max(np.abs(wave)))
        if stim["variant"] == "":
            onsets[stim["utterance"]][stim["system"]] = loud[0] / SR
    for utt, by_system in onsets.items():
        assert max(by_system.values()) - min(by_system.values()) < 0.01, (utt, by_system)  # sources: 0-150 ms


def test_loudness_stays_at_the_target(prepared):
    """-23 LUFS for every clip's sound, so every framed clip of an utterance is as loud as the others."""
    framed = defaultdict(list)
    for stim in prepared.stimuli:
        wave, _ = sf.read(stim["audio_path"], dtype="float64")
        sound, _ = trim(wave, SR)
        assert abs(integrated_loudness(sound, SR) - prepared.settings["loudness_target_lufs"]) < 0.3
        framed[stim["utterance"]].append(integrated_loudness(wave, SR))
    assert prepared.settings["loudness_target_lufs"] == -23.0
    assert all(max(v) - min(v) < 0.5 for v in framed.values()), framed


def test_the_anchor_noise_starts_and_ends_with_the_words(prepared):
    """The degraded copy's noise is confined to its sound: it starts where the natural clip's words do."""
    by_key = {(s["system"], s["utterance"], s["variant"]): s for s in prepared.stimuli}
    anchors = [s for s in prepared.stimuli if s["variant"] == "anchor"]
    assert anchors
    for anchor in anchors:
        natural = by_key[("natural", anchor["utterance"], "")]
        a, _ = sf.read(anchor["audio_path"], dtype="float64")
        n, _ = sf.read(natural["audio_path"], dtype="float64")
        threshold = 10 ** (-40 / 20)
        first = [int(np.flatnonzero(np.abs(x) > threshold)[0]) for x in (a, n)]
        assert abs(first[0] - first[1]) < 0.005 * SR


def test_trimming_is_one_rule_on_the_signal():
    rng = np.random.default_rng(3)
    speech = 0.5 * speech_like(rng, 0.6)
    silence = np.zeros(int(0.15 * SR))
    hiss = rng.normal(0, 10 ** (-75 / 20), int(0.15 * SR))  # a vocoder's low hiss instead of zeros
    cuts = [trim(np.concatenate([pad, speech, pad[:100]]), SR)[0] for pad in (silence, hiss, np.zeros(0))]
    assert len({c.size for c in cuts}) == 1 and cuts[0].size <= speech.size + 2 * int(PAD.trim_margin_seconds * SR)
    assert cuts[0][0] == 0 and abs(cuts[0][-1]) < 1e-6  # faded in and out
    quiet_inside = np.concatenate([speech, np.zeros(SR // 4), speech])  # a pause inside is kept
    span = sound_span(quiet_inside, SR)
    assert span.loud_end - span.loud_start > quiet_inside.size - 0.1 * SR


def test_attention_checks_spread_evenly_over_the_utterances():
    utts = [f"u{i}" for i in range(7)]
    design = make_design(["nat", "x", "m"], utts, DesignConfig(target_ratings=8, trials_per_block=5, seed=4), "nat")
    counts = Counter(t.utterance for t in design.trials if t.kind == KIND_ATTENTION)
    assert set(counts) == set(utts) and max(counts.values()) - min(counts.values()) <= 1
