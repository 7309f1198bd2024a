"""The experiment plan without a queue: stages, keys (what an option change invalidates), readiness, the rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from obt_eval.errors import BadInputError
from pipelines.experiments import plan as P
from pipelines.experiments.options import EncoderFacts, ExperimentOptions, SystemFacts, validate_options

MFCC = EncoderFacts("mfcc", "mfcc", (None,), None, False)
W2V = EncoderFacts("tiny", "/models/tiny", (2,), 2, True)
PROD = SystemFacts("prod", "/data/prod", "fp1")
CORPUS = {"corpus": "c0ffee"}


def plan_input(encoders=(MFCC, W2V), systems=(PROD,), **changes) -> P.PlanInput:
    options = ExperimentOptions(name="x", corpus="c", encoders=[e.source for e in encoders], ks=[50],
                                systems={s.name: s.folder for s in systems})
    return P.PlanInput(replace(options, **changes), tuple(encoders), tuple(systems))


def keys_of(pi: P.PlanInput, facts=CORPUS) -> dict[str, str | None]:
    return P.compute_keys(P.build_stages(pi), facts)


def changed(a: dict, b: dict) -> set[str]:
    return {s for s in a.keys() | b.keys() if a.get(s) != b.get(s)}


def test_every_encoder_and_system_has_its_chain_and_one_study_joins_them():
    stages = P.build_stages(plan_input())
    ids = [s.id for s in stages]
    for g in ("mfcc", "tiny"):
        chain = [f"extract:{g}", f"search:{g}", f"choose:{g}", f"unit-metrics:{g}", f"vocoder:{g}",
                 f"synthesize:{g}", f"resynthesis:{g}"]
        assert [i for i in ids if i.endswith(f":{g}")] == chain
    assert ids.index("import:prod") < ids.index("resynthesis:prod") < ids.index("study")
    by_id = {s.id: s for s in stages}
    assert set(by_id["study"].deps) == {"synthesize:mfcc", "synthesize:tiny", "import:prod", "heldout"}
    for stage in stages:  # dependencies always come first
        assert all(ids.index(d) < ids.index(stage.id) for d in stage.deps)


def test_changing_k_reruns_search_and_below_but_not_extraction():
    before, after = keys_of(plan_input()), keys_of(plan_input(ks=[100]))
    affected = changed(before, after)
    for g in ("mfcc", "tiny"):
        assert {f"search:{g}", f"choose:{g}", f"unit-metrics:{g}", f"vocoder:{g}", f"synthesize:{g}",
                f"resynthesis:{g}"} <= affected
        assert f"extract:{g}" not in affected
    assert "study" in affected
    assert not affected & {"corpus", "heldout", "import:prod", "resynthesis:prod"}


def test_changing_the_vocoder_preset_reruns_neither_extraction_nor_units():
    affected = changed(keys_of(plan_input()), keys_of(plan_input(vocoder_preset="tiny")))
    assert affected == {"vocoder:mfcc", "synthesize:mfcc", "resynthesis:mfcc", "vocoder:tiny", "synthesize:tiny",
                        "resynthesis:tiny", "study"}


def test_adding_an_encoder_adds_only_its_chain_and_a_new_study():
    other = EncoderFacts("logmel", "logmel", (None,), None, False)
    before = keys_of(plan_input())
    after = keys_of(plan_input(encoders=(MFCC, W2V, other)))
    new = set(after) - set(before)
    assert new == {f"{t}:logmel" for t in ("extract", "search", "choose", "unit-metrics", "vocoder", "synthesize",
                                           "resynthesis")}
    assert changed({k: before[k] for k in before}, {k: after[k] for k in before}) == {"study"}


def test_a_changed_outside_folder_rescores_only_that_system():
    affected = changed(keys_of(plan_input()), keys_of(plan_input(systems=(replace(PROD, fingerprint="fp2"),))))
    assert affected == {"import:prod", "resynthesis:prod", "study"}


def test_a_changed_corpus_changes_every_key_and_an_absent_corpus_leaves_keys_unknown():
    pi = plan_input()
    assert changed(keys_of(pi), keys_of(pi, {"corpus": "other"})) == set(keys_of(pi))
    unknown = keys_of(pi, {"corpus": None})
    assert all(v is None for v in unknown.values())


def test_decide_skips_done_stages_submits_ready_ones_and_cancels_stale_runs():
    pi = plan_input(systems=())
    stages = P.build_stages(pi)
    keys = keys_of(pi)
    records = {"corpus": {"key": keys["corpus"], "state": "done"},
               "heldout": {"key": keys["heldout"], "state": "done"},
               "extract:mfcc": {"key": keys["extract:mfcc"], "state": "done", "job_id": 1},
               "extract:tiny": {"key": "an-older-key", "state": "running", "job_id": 2},
               "search:mfcc": {"key": keys["search:mfcc"], "state": "failed", "job_id": 3, "error": "boom"}}
    actions = {d.stage: d.action for d in P.decide(stages, keys, records)}
    assert actions["corpus"] == actions["heldout"] == actions["extract:mfcc"] == "done"
    assert actions["extract:tiny"] == "cancel-stale"
    assert actions["search:mfcc"] == "failed"
    assert actions["choose:mfcc"] == "wait" and actions["study"] == "wait"
    records["extract:tiny"] = {"key": "an-older-key", "state": "superseded", "job_id": 2}
    actions = {d.stage: d.action for d in P.decide(stages, keys, records)}
    assert actions["extract:tiny"] == "submit"
    records["search:mfcc"] = {"key": keys["search:mfcc"], "state": "done"}
    actions = {d.stage: d.action for d in P.decide(stages, keys, records)}
    assert actions["choose:mfcc"] == "local"


def test_vocoders_get_identical_settings_and_the_same_held_out_utterances():
    pi = plan_input(vocoder_preset="tiny", vocoder_steps=7)
    stages = {s.id: s for s in P.build_stages(pi)}
    keys = keys_of(pi)
    naming = P.Naming("x", "/ws", "/ws/experiments/x")
    outputs = {"heldout": {"ids": ["a", "b"], "ids_file": "/h.txt", "exclude_file": "/e.txt"},
               "choose:mfcc": {"units": "/u1"}, "choose:tiny": {"units": "/u2"}}
    a = P.job_params(stages["vocoder:mfcc"], pi, keys, outputs, naming)
    b = P.job_params(stages["vocoder:tiny"], pi, keys, outputs, naming)
    shared = {k: v for k, v in a.items() if k not in ("units", "out")}
    assert shared == {k: v for k, v in b.items() if k not in ("units", "out")}
    assert shared["preset"] == "tiny" and shared["steps"] == 7 and shared["exclude_file"] == "/e.txt"
    assert a["out"] != b["out"] and a["out"].startswith("/ws/vocoders/x-mfcc-")


ROWS = [
    {"layer": 1, "k": 50, "abx_within": 0.20, "pnmi": 0.30, "shuffled_pnmi": 0.05, "units": "/u/1-50"},
    {"layer": 1, "k": 100, "abx_within": 0.20, "pnmi": 0.34, "shuffled_pnmi": 0.12, "units": "/u/1-100"},
    {"layer": 2, "k": 50, "abx_within": 0.12, "pnmi": 0.31, "shuffled_pnmi": 0.05, "units": "/u/2-50"},
    {"layer": 2, "k": 100, "abx_within": 0.12, "pnmi": 0.33, "shuffled_pnmi": 0.11, "units": "/u/2-100"},
    {"layer": 3, "k": 50, "abx_within": 0.15, "pnmi": 0.40, "shuffled_pnmi": 0.05, "units": "/u/3-50"},
]


def test_default_rule_takes_the_registered_layer_and_the_first_k():
    choice = P.choose_layer_k(ROWS, "default", default_layer=1, default_k=100)
    assert (choice["layer"], choice["k"], choice["units"]) == (1, 100, "/u/1-100")
    assert "default" in choice["reason"]


def test_best_rule_takes_the_lowest_abx_layer_then_the_k_with_most_pnmi_above_chance():
    choice = P.choose_layer_k(ROWS, "best", default_layer=1, default_k=50)
    # layer 2 has the lowest ABX; there k=50 has 0.26 above chance, k=100 only 0.22
    assert (choice["layer"], choice["k"]) == (2, 50)
    assert "abx within" in choice["reason"] and "12.00 %" in choice["reason"]
    no_abx = [{**r, "abx_within": None} for r in ROWS]
    assert P.choose_layer_k(no_abx, "best", 1, 50)["layer"] == 3  # then the highest PNMI
    with pytest.raises(ValueError, match="no units"):
        P.choose_layer_k([{"layer": 1, "k": 50, "units_errors": {"kmeans": "too few frames"}}], "best", 1, 50)


def test_held_out_utterances_come_from_the_dev_test_splits_and_never_train():
    rows = [{"id": f"u{i:02d}", "split": "test" if i >= 16 else ("dev" if i >= 12 else "train")} for i in range(20)]
    picked = P.pick_heldout(rows, 5, seed=0)
    assert len(picked["ids"]) == 5 and all(int(u[1:]) >= 12 for u in picked["ids"])
    assert set(picked["exclude"]) == {f"u{i:02d}" for i in range(12, 20)}  # every dev/test utterance
    assert P.pick_heldout(rows, 5, seed=0) == picked and P.pick_heldout(rows, 5, seed=1)["ids"] != picked["ids"]
    plain = [{"id": f"u{i}", "split": ""} for i in range(10)]
    big = P.pick_heldout(plain, 50, seed=0)
    assert len(big["ids"]) == 5 and big["exclude"] == big["ids"]  # at most half the corpus is held out


def test_the_held_out_splits_are_the_vocoders():
    from obt_eval.vocoder.data import HELD_OUT_SPLITS

    assert P.HELD_OUT_SPLITS == HELD_OUT_SPLITS


@pytest.mark.parametrize("bad, match", [
    ({"layers": "top"}, "--layers"),
    ({"study_utterances": 1}, "study_utterances"),
    ({"ks": [1]}, "ks"),
    ({"vocoder_preset": "huge"}, "vocoder preset"),
    ({"encoders": ["a/tiny", "b/tiny"]}, "share a name"),
    ({"systems": {"natural": "/x"}}, "taken"),
    ({"name": "has space"}, "experiment name"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_options_are_refused_with_the_field_named(bad, match):
    data = {"name": "x", "corpus": "c", "encoders": ["mfcc"], **bad}
    with pytest.raises(BadInputError, match=match):
        validate_options(data)


def test_options_round_trip_through_json_and_presets_are_plain_options():
    import json

    from pipelines.experiments.presets import preset

    demo = preset("demo", vocoder_steps=5, name="demo2", sentences_per_language=3)
    again = validate_options(json.loads(json.dumps(demo.to_dict())))
    assert again == demo and again.demo_corpus.sentences_per_language == 3 and again.vocoder_steps == 5
    assert again.name == "demo2" and again.encoders == ["mfcc", "logmel"] and again.ks == [50]
    with pytest.raises(BadInputError, match="unknown experiment preset"):
        preset("nope")
