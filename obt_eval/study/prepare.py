"""From folders of WAVs to a ready study: check the sources, design the trials, render the audio.

Returns plain records; the caller stores them (db.studies.create_study), so this library never
touches the database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obt_eval.provenance import provenance
from obt_eval.study.config import AnchorConfig, DesignConfig, LoudnessConfig, PaddingConfig, Protocol
from obt_eval.study.design import ANCHOR_SYSTEM, make_design
from obt_eval.study.render import measure_sources, render_stimuli
from obt_eval.study.sources import ROLE_ANCHOR, ROLE_REFERENCE, ROLE_TEST, check_sources, scan_system
from obt_eval.workspace import Workspace, check_name


def study_dir(workspace: Workspace, name: str) -> Path:
    """Where a study's audio lives: ``<workspace>/studies/<name>/audio/<opaque id>.wav``."""
    return workspace.root / "studies" / name


@dataclass
class PreparedStudy:
    name: str
    protocol: dict[str, Any]
    design: dict[str, Any]
    settings: dict[str, Any]
    stimuli_dir: Path
    sample_rate: int
    systems: list[dict[str, Any]]
    stimuli: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def prepare_study(name: str, systems: list[tuple[str, str]], reference: tuple[str, str] | None = None, *,
                  workspace: Workspace, protocol: Protocol = Protocol(), design: DesignConfig = DesignConfig(),
                  loudness: LoudnessConfig = LoudnessConfig(), anchor: AnchorConfig = AnchorConfig(),
                  padding: PaddingConfig = PaddingConfig(), allow_partial: bool = False,
                  progress: bool = True) -> PreparedStudy:
    """Scan `systems` (and the natural `reference`), design blinded A/B trials, write normalised, framed audio."""
    check_name(name, "study name")
    sources = [scan_system(n, d, ROLE_TEST, workspace) for n, d in systems]
    if reference is not None:
        sources.append(scan_system(reference[0], reference[1], ROLE_REFERENCE, workspace))
    utterances, warnings = check_sources(sources, allow_partial)
    by_name = {s.name: s for s in sources}
    # silent or near-silent clips are refused by name (or, with allow_partial, their utterances left out)
    utterances, level_warnings, levels = measure_sources(by_name, utterances, loudness, padding, allow_partial,
                                                         progress)
    warnings += level_warnings
    ordered = ([reference[0]] if reference else []) + [n for n, _ in systems]
    plan = make_design(ordered, utterances, design, reference=reference[0] if reference else None)
    out_dir = study_dir(workspace, name)
    rendered, notes = render_stimuli(plan.stimuli, by_name, out_dir, plan.seed, loudness, anchor, progress, padding,
                                     levels)
    warnings += notes
    sample_rate = rendered[0].sample_rate
    system_rows = [{"name": s.name, "role": s.role, "source_dir": str(s.directory), "meta": s.meta} for s in sources]
    anchor_source = reference[0] if reference else ordered[0]
    system_rows.append({"name": ANCHOR_SYSTEM, "role": ROLE_ANCHOR, "source_dir": None,
                        "meta": {"derived_from": anchor_source, "recipe": dataclasses.asdict(anchor)}})
    stimuli = [{
        "system": ANCHOR_SYSTEM if r.key.variant == ANCHOR_SYSTEM else r.key.system,
        "utterance": r.key.utterance, "variant": r.key.variant, "opaque_id": r.opaque_id,
        "audio_path": str(r.path.resolve()), "sample_rate": r.sample_rate, "num_samples": r.num_samples,
        "duration": r.duration, "loudness_lufs": r.loudness_lufs, "source_loudness_lufs": r.source_loudness_lufs,
        "gain_db": r.gain_db, "source_path": str(r.source_path),
    } for r in rendered]

    def slot(key) -> tuple[str, str, str]:  # noqa: ANN001 — a StimulusKey
        return (ANCHOR_SYSTEM if key.variant == ANCHOR_SYSTEM else key.system, key.utterance, key.variant)

    trials = [{"block": t.block, "seq": t.seq, "kind": t.kind, "utterance": t.utterance, "a": slot(t.a),
               "b": slot(t.b), "repeat_of": t.repeat_of} for t in plan.trials]
    return PreparedStudy(
        name=name, protocol=protocol.to_dict(),
        design={"config": dataclasses.asdict(design) | {"seed": plan.seed}, "summary": plan.summary,
                "utterances": utterances},
        settings={"loudness": dataclasses.asdict(loudness), "loudness_target_lufs": rendered[0].loudness_lufs,
                  "anchor": dataclasses.asdict(anchor), "padding": dataclasses.asdict(padding),
                  "warnings": warnings, "provenance": provenance()},
        stimuli_dir=out_dir, sample_rate=sample_rate, systems=system_rows, stimuli=stimuli, trials=trials,
        warnings=warnings,
    )
