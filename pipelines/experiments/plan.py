"""The experiment plan as pure functions: its stages, their keys, what is ready, and each stage's job parameters.

Nothing here touches the disk, the database or the queue, so all of it is testable in isolation.

* `build_stages` lists the stages of an experiment (one chain per encoder, one per outside system,
  then the study) with each stage's own options and the stages it depends on.
* `compute_keys`: a stage's key is the hash of its own options and its dependencies' keys. A stage
  re-runs only when its key changes, so changing --k re-runs search → choice → … → study for every
  encoder but never extraction, a new vocoder preset never re-runs extraction or units, and a new
  encoder adds its own chain (and a new study) without touching the others.
* `decide` compares the keys with what the experiment folder records and says, per stage, whether it
  is done, waiting, running, failed, or ready to be submitted (or computed on the spot, for the cheap
  "local" stages: corpus check, held-out choice, (layer, k) choice).
* `choose_layer_k` and `pick_heldout` are the stated rules; `job_params` builds each stage's job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pipelines.experiments.options import EncoderFacts, ExperimentOptions, SystemFacts

# the same splits the vocoder holds out (obt_eval.vocoder.data.HELD_OUT_SPLITS; a test checks they agree)
HELD_OUT_SPLITS = ("dev", "valid", "validation", "val", "test", "eval")
KEY_LENGTH = 12
ACTIVE = ("queued", "running")

# what each stage type is, in the order a reader follows the chain
TITLES = {
    "corpus-source": "generate and ingest the corpus",
    "corpus": "check the corpus",
    "heldout": "choose the held-out utterances",
    "extract": "extract candidate layers",
    "search": "layer / k search (ABX, PNMI)",
    "choose": "choose layer and k",
    "unit-metrics": "unit metrics (speaker invariance, bitrate)",
    "vocoder": "train the vocoder",
    "synthesize": "synthesize the held-out utterances",
    "resynthesis": "resynthesis metrics (MCD, F0, STOI)",
    "import": "import the outside system's WAVs",
    "study": "create the listening study",
}
LOCAL_TYPES = ("corpus", "heldout", "choose")


@dataclass(frozen=True)
class StageSpec:
    """One step of the plan: a job of `kind` (None: computed by the coordinator itself)."""

    id: str
    type: str
    kind: str | None
    group: str  # the encoder or system this stage belongs to; "" for the shared stages
    deps: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.type] + (f" ({self.group})" if self.group else "")

    @property
    def local(self) -> bool:
        return self.kind is None


@dataclass(frozen=True)
class PlanInput:
    options: ExperimentOptions
    encoders: tuple[EncoderFacts, ...]
    systems: tuple[SystemFacts, ...] = ()


def layers_text(layers: tuple[int | None, ...] | list[int | None]) -> str | None:
    """Candidate layers as the `extract`/`search` jobs take them ("14", "12,13,14"); None for baselines."""
    ints = [layer for layer in layers if layer is not None]
    return ",".join(str(layer) for layer in ints) if ints else None


def build_stages(plan: PlanInput) -> list[StageSpec]:
    """Every stage of the experiment, dependencies before dependents."""
    o = plan.options
    stages: list[StageSpec] = []
    corpus_deps: tuple[str, ...] = ()
    if o.demo_corpus is not None:
        stages.append(StageSpec("corpus-source", "corpus-source", "experiment-corpus", "", (),
                                {"corpus": o.corpus, "speakers_per_language": o.demo_corpus.speakers_per_language,
                                 "sentences_per_language": o.demo_corpus.sentences_per_language}))
        corpus_deps = ("corpus-source",)
    stages.append(StageSpec("corpus", "corpus", None, "", corpus_deps, {"corpus": o.corpus}))
    stages.append(StageSpec("heldout", "heldout", None, "", ("corpus",),
                            {"study_utterances": o.study_utterances, "seed": o.seed}))
    vocoder = {"preset": o.vocoder_preset, "steps": o.vocoder_steps, "speakers": o.vocoder_speakers,
               "f0": o.vocoder_f0, "checkpoint_every": o.vocoder_checkpoint_every,
               "validate_every": o.vocoder_validate_every}
    contenders: list[str] = []
    for enc in plan.encoders:
        g = enc.label
        stages += [
            StageSpec(f"extract:{g}", "extract", "extract", g, ("corpus",),
                      {"encoder": enc.source, "layers": layers_text(enc.candidates)}),
            StageSpec(f"search:{g}", "search", "experiment-search", g, (f"extract:{g}",),
                      {"ks": list(o.ks), "seed": o.seed, "sample_frac": o.kmeans_sample_frac,
                       "n_init": o.kmeans_n_init}),
            StageSpec(f"choose:{g}", "choose", None, g, (f"search:{g}",),
                      {"rule": choice_rule(o.layers, enc), "default_layer": enc.default_layer,
                       "default_k": o.ks[0]}),
            StageSpec(f"unit-metrics:{g}", "unit-metrics", "metrics", g, (f"choose:{g}",)),
            StageSpec(f"vocoder:{g}", "vocoder", "experiment-vocoder", g, (f"choose:{g}", "heldout"), dict(vocoder)),
            StageSpec(f"synthesize:{g}", "synthesize", "synthesize", g, (f"vocoder:{g}", "heldout")),
            StageSpec(f"resynthesis:{g}", "resynthesis", "resynthesis-metrics", g, (f"synthesize:{g}",)),
        ]
        contenders.append(f"synthesize:{g}")
    for system in plan.systems:
        g = system.name
        stages += [
            StageSpec(f"import:{g}", "import", "import-system", g, ("corpus", "heldout"),
                      {"folder": system.folder, "fingerprint": system.fingerprint}),
            StageSpec(f"resynthesis:{g}", "resynthesis", "resynthesis-metrics", g, (f"import:{g}",)),
        ]
        contenders.append(f"import:{g}")
    stages.append(StageSpec("study", "study", "experiment-study", "", (*contenders, "heldout"),
                            {"target_ratings": o.study_target_ratings, "trials_per_block": o.study_trials_per_block,
                             "max_blocks_per_rater": o.study_max_blocks_per_rater, "seed": o.seed}))
    return stages


def choice_rule(layers: str, enc: EncoderFacts) -> str:
    """`default` (the registered layer, the first k) or `best` (lowest ABX, then PNMI above chance)."""
    if layers == "default" or len(enc.candidates) == 1:
        return "default"
    return "best"


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:KEY_LENGTH]


def compute_keys(stages: list[StageSpec], facts: dict[str, Any]) -> dict[str, str | None]:
    """Key of every stage: hash(type, own options, facts about it, dependencies' keys); None while unknowable.

    `facts` holds what only the disk can tell, by stage id (the corpus's manifest fingerprint under
    "corpus"); a stage whose fact is still None (the corpus is not generated yet) has no key yet, nor
    have its dependents.
    """
    keys: dict[str, str | None] = {}
    for stage in stages:
        dep_keys = {d: keys.get(d) for d in stage.deps}
        fact = facts.get(stage.id)
        if any(v is None for v in dep_keys.values()) or (stage.id in facts and fact is None):
            keys[stage.id] = None
            continue
        keys[stage.id] = digest({"type": stage.type, "group": stage.group, "options": stage.options,
                                 "fact": fact, "deps": dep_keys})
    return keys


@dataclass(frozen=True)
class Decision:
    stage: str
    action: str  # done | wait | active | submit | local | failed | cancel-stale
    reason: str = ""


def decide(stages: list[StageSpec], keys: dict[str, str | None], records: dict[str, dict]) -> list[Decision]:
    """What to do with each stage now, from the current keys and the recorded runs.

    A record is ``{"key", "state", "job_id", ...}``. A stage is done only when its record's key is the
    current key; a recorded run of an older key that is still active is cancelled (its result would be
    thrown away); a stage whose dependencies are all done is ready.
    """
    out: list[Decision] = []
    done: set[str] = set()
    for stage in stages:
        key = keys.get(stage.id)
        rec = records.get(stage.id) or {}
        current = key is not None and rec.get("key") == key
        if current and rec.get("state") == "done":
            done.add(stage.id)
            out.append(Decision(stage.id, "done"))
            continue
        if current and rec.get("state") in ACTIVE:
            out.append(Decision(stage.id, "active"))
            continue
        if current and rec.get("state") in ("failed", "cancelled"):
            out.append(Decision(stage.id, "failed", rec.get("error") or rec.get("state")))
            continue
        if not current and rec.get("state") in ACTIVE and rec.get("job_id") is not None:
            out.append(Decision(stage.id, "cancel-stale", "its options or inputs changed"))
            continue
        waiting = [d for d in stage.deps if d not in done]
        if key is None or waiting:
            out.append(Decision(stage.id, "wait", ", ".join(waiting)))
            continue
        out.append(Decision(stage.id, "local" if stage.local else "submit"))
    return out


# --- the stated rules ------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if out != out else out  # NaN is "not computed"


def choose_layer_k(rows: list[dict], rule: str, default_layer: int | None, default_k: int) -> dict[str, Any]:
    """The (layer, k) an encoder goes on with, from its search rows, and the reason in words.

    `default`: the encoder's registered layer (14 for XLSR-53 and MMS-300M, 24 for MMS-1B; the middle
    layer of other checkpoints; none for mfcc/logmel) and the first --k. `best`: the layer with the
    lowest within-speaker ABX (else the highest PNMI, else the highest unit silhouette), then at that
    layer the k with the highest PNMI above its shuffled baseline (PNMI alone grows with k).
    """
    usable = [r for r in rows if r.get("units")]
    if not usable:
        problems = "; ".join(str(r.get("units_errors")) for r in rows if r.get("units_errors"))
        raise ValueError(f"the search produced no units for any (layer, k){': ' + problems if problems else ''}")

    def layer_of(r: dict) -> int | None:
        v = _num(r.get("layer"))
        return None if v is None else int(v)

    def pick(candidates: list[dict], layer: int | None, k: int | None) -> dict | None:
        for r in candidates:
            if layer_of(r) == layer and (k is None or int(r["k"]) == k):
                return r
        return None

    if rule == "default":
        layers = {layer_of(r) for r in usable}
        layer = default_layer if default_layer in layers else (next(iter(layers)) if len(layers) == 1 else None)
        row = pick(usable, layer, default_k) or pick(usable, layer, None)
        if row is None:
            raise ValueError(f"the search has no units at the default layer {default_layer}")
        where = "no layers (spectral baseline)" if layer is None else f"layer {layer} (the encoder's default)"
        reason = f"default rule: {where}, k = {int(row['k'])} (the first --k)"
        return _choice(row, rule, reason)
    scored: dict[int | None, dict[str, float]] = {}
    metric_used = None
    for metric, lower in (("abx_within", True), ("pnmi", False), ("silhouette_units", False)):
        per_layer: dict[int | None, float] = {}
        for r in usable:
            v = _num(r.get(metric))
            if v is not None:
                layer = layer_of(r)
                per_layer[layer] = min(per_layer.get(layer, v), v) if lower else max(per_layer.get(layer, v), v)
        if per_layer:
            metric_used, scored = metric, {layer: {"value": v, "lower": lower} for layer, v in per_layer.items()}
            break
    if metric_used is None:
        row = usable[0]
        return _choice(row, rule, "no metric could be computed: first searched layer and k")
    lower = next(iter(scored.values()))["lower"]
    layer = (min if lower else max)(scored, key=lambda x: (scored[x]["value"], -1 if x is None else x))
    at_layer = [r for r in usable if layer_of(r) == layer]
    margins = {int(r["k"]): _num(r.get("pnmi")) - (_num(r.get("shuffled_pnmi")) or 0.0)
               for r in at_layer if _num(r.get("pnmi")) is not None}
    if margins:
        k = max(margins, key=lambda x: (margins[x], -x))
        k_reason = f"k = {k} (highest PNMI above the shuffled baseline: {margins[k]:.3f})"
    else:
        k = default_k if any(int(r["k"]) == default_k for r in at_layer) else int(at_layer[0]["k"])
        k_reason = f"k = {k} (no PNMI without alignments: the first --k)"
    row = pick(at_layer, layer, k)
    value = scored[layer]["value"]
    shown = f"{100 * value:.2f} %" if metric_used == "abx_within" else f"{value:.3f}"
    reason = (f"best rule: layer {layer} ({'lowest' if lower else 'highest'} {metric_used.replace('_', ' ')} "
              f"of {len(scored)} layers: {shown}), {k_reason}")
    return _choice(row, rule, reason)


def _choice(row: dict, rule: str, reason: str) -> dict[str, Any]:
    layer = _num(row.get("layer"))
    return {"layer": None if layer is None else int(layer), "k": int(row["k"]), "units": row["units"],
            "units_hash": row.get("units_hash"), "features": row.get("features"), "rule": rule, "reason": reason}


def pick_heldout(records: list[dict], count: int, seed: int) -> dict[str, Any]:
    """The utterances every contender is heard on, unseen by every vocoder; `records` = id, split, speaker.

    Utterances of a held-out split (dev/test…) come first (a seeded draw of `count` of them), topped
    up by a seeded draw from the rest. Vocoders train on everything else: all held-out-split
    utterances and the chosen ones are excluded. At most half the corpus is held out.
    """
    import random

    ids = sorted(str(r["id"]) for r in records)
    split = {str(r["id"]): str(r.get("split") or "").lower() for r in records}
    limit = max(1, len(ids) // 2)
    count = min(count, limit)
    held_split = [u for u in ids if split[u] in HELD_OUT_SPLITS]
    if len(held_split) >= len(ids) - 1:  # a corpus that is all "test" has no held-out split worth keeping
        held_split = []
    rng = random.Random(seed)
    pool = held_split[:]
    rng.shuffle(pool)
    chosen = pool[:count]
    if len(chosen) < count:
        rest = [u for u in ids if u not in set(held_split)]
        rng.shuffle(rest)
        chosen += rest[: count - len(chosen)]
    chosen = sorted(chosen)
    exclude = sorted(set(held_split) | set(chosen))
    if len(exclude) > len(ids) - 1:
        exclude = chosen
    rule = (f"{len(chosen)} utterances: " + (f"drawn from the {len(held_split)} of the dev/test splits"
                                             if held_split else "a seeded draw (the corpus has no dev/test split)")
            + (", topped up from the training split" if len(held_split) < len(chosen) and held_split else "")
            + f"; vocoders train on the other {len(ids) - len(exclude)}")
    return {"ids": chosen, "exclude": exclude, "rule": rule}


# --- job parameters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Naming:
    """Where an experiment's artifacts go (workspace-level folders, named by experiment, contender and key)."""

    experiment: str
    root: str  # the workspace root
    exp_dir: str  # <root>/experiments/<name>

    def artifact(self, kind: str, group: str, key: str) -> str:
        return f"{self.root}/{kind}/{self.experiment}-{group}-{key[:6]}"


def job_params(stage: StageSpec, plan: PlanInput, keys: dict[str, str | None], outputs: dict[str, dict],
               naming: Naming) -> dict[str, Any]:
    """The job parameters of a ready stage, from the plan and its dependencies' outputs."""
    o = plan.options
    key = keys[stage.id] or ""
    g = stage.group
    enc = next((e for e in plan.encoders if e.label == g), None)
    heldout = outputs.get("heldout", {})
    if stage.type == "corpus-source":
        return {"name": o.corpus, "speakers_per_language": stage.options["speakers_per_language"],
                "sentences_per_language": stage.options["sentences_per_language"]}
    if stage.type == "extract":
        return {"corpus": o.corpus, "encoder": enc.source, "layers": stage.options["layers"]}
    if stage.type == "search":
        return {"corpus": o.corpus, "encoder": enc.source, "layers": layers_text(enc.candidates),
                "ks": list(o.ks), "seed": o.seed, "sample_frac": o.kmeans_sample_frac, "n_init": o.kmeans_n_init,
                "out": f"{naming.exp_dir}/search/{g}-{key[:6]}",
                "units_prefix": f"{naming.experiment}-{g}-{key[:6]}"}
    if stage.type == "unit-metrics":
        return {"units": outputs[f"choose:{g}"]["units"]}
    if stage.type == "vocoder":
        v = stage.options
        return {"units": outputs[f"choose:{g}"]["units"], "out": naming.artifact("vocoders", g, key),
                "preset": v["preset"], "steps": v["steps"], "speakers": v["speakers"], "f0": v["f0"],
                "checkpoint_every": v["checkpoint_every"], "validate_every": v["validate_every"],
                "exclude_file": heldout["exclude_file"]}
    if stage.type == "synthesize":
        return {"vocoder": outputs[f"vocoder:{g}"]["vocoder"], "units": outputs[f"choose:{g}"]["units"],
                "name": naming.artifact("stimuli", g, key).rsplit("/", 1)[-1], "ids": ",".join(heldout["ids"]),
                "system": g}
    if stage.type == "resynthesis":
        upstream = outputs.get(f"synthesize:{g}") or outputs.get(f"import:{g}") or {}
        return {"stimuli": upstream["out"], "corpus": o.corpus, "system": g}
    if stage.type == "import":
        return {"name": g, "folder": stage.options["folder"], "corpus": o.corpus, "ids_file": heldout["ids_file"],
                "out": naming.artifact("stimuli", g, key)}
    if stage.type == "study":
        systems = [(d.split(":", 1)[1], outputs[d]["out"]) for d in stage.deps if d != "heldout"]
        return {"name": outputs.get("study", {}).get("name") or "", "systems": ",".join(f"{n}={p}" for n, p in systems),
                "corpus": o.corpus, "ids_file": heldout["ids_file"], "natural_out": f"{naming.exp_dir}/natural",
                "target_ratings": o.study_target_ratings, "trials_per_block": o.study_trials_per_block,
                "max_blocks_per_rater": o.study_max_blocks_per_rater, "raters": o.raters, "seed": o.seed}
    raise ValueError(f"stage {stage.id} is computed by the coordinator, not a job")
