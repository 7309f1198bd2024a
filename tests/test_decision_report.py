"""The decision report: verdict, optional columns, self-contained page, traceable figures; and its data reader."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from obt_eval.report.decision import render_decision_report

UTTS = [f"u{i:03d}" for i in range(8)]


def search_rows(offset: float) -> list[dict]:
    return [{"layer": layer, "k": k, "abx_within": 0.10 + offset + 0.01 * abs(layer - 2),
             "abx_across": 0.15 + offset + 0.01 * abs(layer - 2), "abx_gap": 0.05, "pnmi": 0.30 + 0.01 * k / 50,
             "shuffled_pnmi": 0.05, "bitrate_dedup": 120.0, "units": f"/u/{layer}-{k}", "units_hash": "abc",
             "features": f"/f/{layer}", "features_hash": "def"} for layer in (1, 2, 3) for k in (50, 100)]


def resynth(name: str, mcd: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"system": name, "id": u, "mcd_db": mcd + rng.normal(0, 0.05), "f0_rmse_cents": 80 + rng.normal(0, 5),
             "gpe": 0.1, "stoi": 0.8 + rng.normal(0, 0.01)} for u in UTTS]


def fixture(tmp_path: Path, optional: bool) -> dict:
    search = tmp_path / "search.json"
    search.write_text(json.dumps({"rows": search_rows(0.0)}))
    contenders = [
        {"name": "enc-a", "kind": "encoder", "choice": {"layer": 2, "k": 50, "rule": "best", "reason": "lowest ABX"},
         "search_rows": search_rows(0.0), "search_file": str(search),
         "search_hash": "sha256:" + hashlib.sha256(search.read_bytes()).hexdigest(),
         "resynthesis": resynth("enc-a", 7.0, 0), "resynthesis_file": "/s/a/metrics.csv"},
        {"name": "enc-b", "kind": "encoder", "choice": {"layer": 2, "k": 50, "rule": "best", "reason": "lowest ABX"},
         "search_rows": search_rows(0.05), "search_file": str(search), "search_hash": "sha256:x",
         "resynthesis": resynth("enc-b", 8.0, 1), "resynthesis_file": "/s/b/metrics.csv"},
        {"name": "prod", "kind": "system", "resynthesis": resynth("prod", 7.5, 2), "resynthesis_file": "/s/p.csv",
         "notes": ["2 file(s) named after no utterance of the corpus were left out (x1, x2)"]},
    ]
    if optional:
        contenders[0]["predicted_mos"] = {"judges": {}, "clips": [], "system": {"dnsmos_ovrl": 3.1, "distillmos": 3.4,
                                                                                 "n": 8}}
        contenders[0]["intelligibility"] = {"model": "m", "lang": "por", "clips": [], "system": {
            "cer": 0.2, "wer": 0.4, "cer_vs_original": 0.1, "wer_vs_original": 0.2, "dcer": 0.05, "dwer": 0.1, "n": 8}}
        contenders[1]["predicted_mos"] = {"system": {"dnsmos_ovrl": 2.5, "distillmos": 2.9, "n": 8}}
    return {"experiment": "exp", "generated_at": "now", "corpus": {"name": "c", "utterances": 40, "seconds": 120,
                                                                    "speakers": 4, "alignments": True},
            "heldout": {"ids": UTTS, "rule": "8 utterances"}, "contenders": contenders,
            "study": {"name": "exp", "trials": 40, "trials_rated": 0, "target_raters": 20, "source": "db"}}


def ratings(better: str, worse: str, seed: int = 3) -> pd.DataFrame:
    from obt_eval.study.simulate import simulate_ab_ratings

    return simulate_ab_ratings(raters=12, utterances=8, per_rater=8, diff=1.2, rng=seed, systems=(better, worse))


def test_verdict_names_leaders_with_their_margin_and_uncertainty(tmp_path):
    out = render_decision_report(fixture(tmp_path, optional=False), tmp_path / "report")
    text = " ".join(out.verdict)
    assert re.search(r"<b>enc-a</b> leads on ABX within \(10\.00% vs 15\.00% for enc-b, 5\.00 points lower", text)
    # MCD: enc-a 7.0 vs prod 7.5 (enc-b 8.0 is third); the paired interval over the 8 shared utterances excludes 0
    mcd = next(line for line in out.verdict if "leads on MCD" in line)
    assert "<b>enc-a</b>" in mcd and "for prod" in mcd and "over 8 utterances" in mcd and "includes 0" not in mcd
    assert out.verdict[0].startswith("<b>enc-a</b> leads on")
    assert "listening test: 0 of 20 raters so far (0 of 40 trials rated)" in out.missing
    assert any("predicted MOS" in m and "not computed" in m for m in out.missing)
    row = out.summary.set_index("contender").loc["enc-a"]
    assert row["mcd_db_lo"] < row["mcd_db"] < row["mcd_db_hi"]


def test_ties_are_reported_as_ties_not_as_a_lead(tmp_path):
    data = fixture(tmp_path, optional=False)
    data["contenders"][1]["search_rows"] = search_rows(0.0)
    out = render_decision_report(data, tmp_path / "report")
    assert any(line.startswith("ABX within: enc-a, enc-b tie at 10.00%") for line in out.verdict)
    assert not any("leads on ABX within" in line for line in out.verdict)


def test_optional_columns_appear_only_when_computed(tmp_path):
    plain = Path(render_decision_report(fixture(tmp_path, optional=False), tmp_path / "a").files["html"]).read_text()
    rich_report = render_decision_report(fixture(tmp_path, optional=True), tmp_path / "b")
    rich = Path(rich_report.files["html"]).read_text()
    for header in ("DNSMOS OVRL", "DistillMOS", "CER", "ΔCER vs original"):
        assert f">{header}" not in plain
        assert f">{header}" in rich
    assert any("<b>enc-a</b> leads on DNSMOS OVRL (3.10 vs 2.50" in line for line in rich_report.verdict)
    assert not any("predicted MOS" in m for m in rich_report.missing)


def test_ratings_add_mos_with_cis_and_the_mixed_model_comparison(tmp_path):
    data = fixture(tmp_path, optional=False)
    out = render_decision_report(data, tmp_path / "report", ratings("enc-b", "enc-a"))
    mos = next(line for line in out.verdict if "leads on MOS" in line)
    assert "<b>enc-b</b>" in mos and "mixed model p (Holm)" in mos and "significant" in mos
    assert "listening test: 12 of 20 raters so far" in " ".join(out.missing)
    assert "mos" in out.files and Path(out.files["mos"]).read_bytes()[:4] == b"\x89PNG"
    page = Path(out.files["html"]).read_text()
    assert "Listening test: pairwise comparisons" in page and "crossed LMM" in page


def test_the_page_is_self_contained_phone_ready_and_every_figure_is_traceable(tmp_path):
    out = render_decision_report(fixture(tmp_path, optional=True), tmp_path / "report")
    page = Path(out.files["html"]).read_text()
    assert "name='viewport'" in page and "@media (max-width:600px)" in page
    srcs = re.findall(r"src='([^']+)'", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for href in re.findall(r"href='([^']+)'", page):
        assert not href.startswith(("http", "/", "file:")), href
        assert (out.out_dir / href).exists(), href
    sources = json.loads(Path(out.files["sources"]).read_text())
    assert set(sources["figures"]) == {f"figures/{k}.png" for k in ("abx_by_layer", "pnmi_vs_k", "resynthesis")}
    abx = sources["figures"]["figures/abx_by_layer.png"]
    search_file = Path(abx[0]["file"])
    assert abx[0]["sha256"] == "sha256:" + hashlib.sha256(search_file.read_bytes()).hexdigest()
    assert ["/f/2", "def"] in abx[0]["features"]
    assert {r["contender"] for r in sources["figures"]["figures/resynthesis.png"]} == {"enc-a", "enc-b", "prod"}
    table = pd.read_csv(out.files["csv"])
    assert list(table["contender"]) == ["enc-a", "enc-b", "prod"]
    assert json.loads(Path(out.files["json"]).read_text())["verdict"] == out.verdict


# --- the reader: what the experiment's folders hold, as other tools write it -----------------------------------


@pytest.fixture
def experiment_folders(tmp_path, tone_corpus, workspace):
    """A finished-looking plan over the `tones` corpus, with the files each stage leaves behind."""
    import dataclasses

    from obt_eval.quality.annotate import add_manifest_columns
    from pipelines.experiments import coordinator as C
    from pipelines.experiments import plan as P
    from pipelines.experiments.options import EncoderFacts, ExperimentOptions, SystemFacts

    root = workspace.corpus_dir("tones")
    ids = list(pd.read_parquet(root / "manifest.parquet")["id"])
    # written the way `lid` and `corpus-quality` write them (the corpus' checksums follow)
    add_manifest_columns(root, {"lid_top1": dict(zip(ids, ["por", "por", "eng", "por"], strict=True)),
                                "lid_flag": dict(zip(ids, [False, False, True, False], strict=True)),
                                "dnsmos_ovrl": dict(zip(ids, [3.5, 2.4, 3.9, np.nan], strict=True))})

    folders = {}
    for name in ("mfcc", "logmel", "prod"):
        folder = tmp_path / "stimuli" / name
        folder.mkdir(parents=True)
        pd.DataFrame([{"system": name, "id": u, "mcd_db": 5.0 + len(name), "stoi": 0.7} for u in ids]).to_csv(
            folder / "metrics.csv", index=False)
        folders[name] = folder
    (folders["mfcc"] / "predicted_mos.json").write_text(json.dumps(
        {"judges": {"dnsmos": "speechmos"}, "clips": [{"id": ids[0], "dnsmos_ovrl": 3.0}],
         "system": {"dnsmos_ovrl": 3.05, "distillmos": 3.3, "n": 4}}))
    (folders["prod"] / "intelligibility.json").write_text(json.dumps(
        {"model": "mms-1b-all", "lang": "por", "clips": [],
         "system": {"cer": 0.31, "wer": 0.52, "cer_vs_original": 0.2, "wer_vs_original": 0.3, "dcer": 0.11,
                    "dwer": 0.22, "n": 4}}))
    search = tmp_path / "results.json"
    search.write_text(json.dumps({"rows": [{"layer": None, "k": 8, "pnmi": None, "units": "/u", "bitrate_dedup": 90}]}))

    options = ExperimentOptions(name="x", corpus="tones", encoders=["mfcc", "logmel"], ks=[8],
                                systems={"prod": str(tmp_path / "prod_src")})
    encoders = [EncoderFacts(e, e, (None,), None, False) for e in ("mfcc", "logmel")]
    systems = [SystemFacts("prod", str(tmp_path / "prod_src"), "fp")]
    plan = {"name": "x", "options": options.to_dict(), "state": "done",
            "facts": {"encoders": [dataclasses.asdict(e) for e in encoders],
                      "systems": [dataclasses.asdict(s) for s in systems]}, "stages": {}}
    pi = C.plan_input(plan)
    keys = P.compute_keys(P.build_stages(pi), {"corpus": C.corpus_fingerprint(workspace, "tones")})
    outputs = {"corpus": {"corpus": "tones", "utterances": 4, "seconds": 7.0, "speakers": 1, "alignments": False},
               "heldout": {"ids": ids[:2], "rule": "2 utterances"},
               "import:prod": {"out": str(folders["prod"]), "unknown_ids": ["zz1"], "missing_ids": []},
               "resynthesis:prod": {"metrics": str(folders["prod"] / "metrics.csv")}}
    for e in ("mfcc", "logmel"):
        outputs[f"search:{e}"] = {"results": str(search)}
        outputs[f"choose:{e}"] = {"layer": None, "k": 8, "rule": "default", "reason": "default rule", "units": "/u"}
        outputs[f"synthesize:{e}"] = {"out": str(folders[e])}
        outputs[f"resynthesis:{e}"] = {"metrics": str(folders[e] / "metrics.csv")}
    plan["stages"] = {sid: {"key": keys[sid], "state": "done", "outputs": out} for sid, out in outputs.items()}
    plan["keys"] = keys
    return plan


def test_the_reader_takes_predicted_mos_intelligibility_and_manifest_flags_when_present(experiment_folders,
                                                                                       workspace):
    from pipelines.experiments.report import gather, write_report

    data, ratings_ = gather(workspace, experiment_folders)
    assert ratings_ is None
    by_name = {c["name"]: c for c in data["contenders"]}
    assert by_name["mfcc"]["predicted_mos"]["system"]["dnsmos_ovrl"] == 3.05
    assert "predicted_mos" not in by_name["logmel"] and "intelligibility" not in by_name["mfcc"]
    assert by_name["prod"]["intelligibility"]["system"]["cer"] == 0.31
    assert by_name["prod"]["notes"][0].startswith("1 file(s) named after no utterance")
    quality = data["corpus"]["quality"]
    assert quality["lid"]["flagged"] == ["utt02"]
    assert quality["lid"]["top1_counts"] == {"por": 3, "eng": 1}
    assert quality["dnsmos"]["n"] == 3 and quality["dnsmos"]["below_3"] == ["utt01"]
    files = write_report(workspace, experiment_folders)
    page = Path(files["html"]).read_text()
    assert "1 utterance(s) flagged by language ID" in page and "utt02" in page
    assert ">DNSMOS OVRL" in page and ">CER" in page
    assert "ABX and PNMI: not computed" in page  # the tone corpus has no alignments


def test_a_small_difference_in_whole_units_is_not_printed_as_minus_zero():
    from obt_eval.report.decision import _fmt, _signed

    assert _fmt(1168.4, "f0") == "1168"
    assert _signed(-0.3, "f0") == "−0.3" and _signed(0.04, "f0") == "+0.0"
