"""Named experiments: the demo is an experiment preset, run by the same code as any other experiment."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from obt_eval.errors import BadInputError
from pipelines.experiments.options import DemoCorpusOptions, ExperimentOptions, validate_options


def demo(**overrides: Any) -> ExperimentOptions:
    """The one-click demo: a synthetic Portuguese + Guarani corpus (generated and ingested as the first stage),
    the weightless `mfcc` and `logmel` encoders (no download), k = 50, a `tiny` vocoder of 300 steps (it shows
    the workflow, it does not sound good), 6 study utterances and a study with 3 invitations."""
    options = ExperimentOptions(
        name="demo", corpus="demo", encoders=["mfcc", "logmel"], ks=[50],
        kmeans_sample_frac=1.0,  # 24 short utterances: 10 % of them would be too few frames for k = 50
        vocoder_preset="tiny", vocoder_steps=300, vocoder_checkpoint_every=50, vocoder_validate_every=300,
        study_utterances=6, study_target_ratings=2, study_trials_per_block=6, study_max_blocks_per_rater=1,
        raters=3, demo_corpus=DemoCorpusOptions(), preset="demo",
    )
    corpus_fields = {"speakers_per_language", "sentences_per_language"}
    corpus = {k: overrides.pop(k) for k in list(overrides) if k in corpus_fields}
    if corpus:
        options = replace(options, demo_corpus=replace(options.demo_corpus, **corpus))
    return validate_options(replace(options, **overrides))


PRESETS = {"demo": demo}


def preset(preset_name: str, /, **overrides: Any) -> ExperimentOptions:
    """The options of a named preset; `overrides` replace any of them (the experiment `name` too)."""
    if preset_name not in PRESETS:
        raise BadInputError(f"unknown experiment preset {preset_name!r}", f"use one of: {', '.join(PRESETS)}")
    return PRESETS[preset_name](**overrides)
