"""Statistics: the JSON contract, the model against statsmodels, clustering, screening, CSV safety."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from obt_eval.study.mixed import fit_crossed_lmm
from obt_eval.study.ratings_csv import neutralise, read_ratings_csv, write_ratings_csv
from obt_eval.study.simulate import simulate_ab_ratings
from obt_eval.study.statistics import analyse, cluster_mean_ci
from obt_eval_cli.main import build_app


def test_lmm_matches_statsmodels():
    import statsmodels.formula.api as smf

    df = simulate_ab_ratings(12, 20, 12, diff=0.3, rng=4)
    x = np.where(df.system == "a", 0.5, -0.5)
    pos = np.where(df.position == "A", 0.5, -0.5)
    r, u = pd.factorize(df.rater)[0], pd.factorize(df.utterance)[0]
    fit = fit_crossed_lmm(df.score.to_numpy(float), np.column_stack([np.ones(len(df)), x, pos]),
                          ["Intercept", "x", "pos"],
                          {"r": (r, None), "u": (u, None), "r:x": (r, x), "u:x": (u, x)})
    df = df.assign(x=x, pos=pos, g=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("score ~ x + pos", df, groups="g", re_formula="0",
                          vc_formula={"r": "0+C(rater)", "u": "0+C(utterance)", "rx": "0+C(rater):x",
                                      "ux": "0+C(utterance):x"}).fit(reml=True, method="lbfgs")
    np.testing.assert_allclose(fit.beta, ref.fe_params.to_numpy(), atol=2e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_beta)), ref.bse_fe.to_numpy(), rtol=0.02)
    np.testing.assert_allclose(fit.residual_variance, ref.scale, rtol=0.02)


def test_analysis_json_contract_and_effect():
    df = simulate_ab_ratings(16, 24, 16, diff=0.8, rng=1, systems=("mms", "xlsr"))
    res = analyse(df)
    assert [s["system"] for s in res["systems"]] == ["mms", "xlsr"]
    for s in res["systems"]:
        assert {"mos", "ci95", "n", "sd"} <= set(s) and s["ci95"][0] < s["mos"] < s["ci95"][1]
    (c,) = res["comparisons"]
    assert {"a", "b", "diff", "p_mixed", "p_paired_t", "p_wilcoxon", "p_holm", "d_z", "model"} <= set(c)
    assert c["diff"] > 0.4 and c["p_mixed"] < 0.01 and c["p_holm"] == pytest.approx(c["p_mixed"])
    assert c["model"].startswith("crossed LMM: score ~ system + position")
    json.dumps(res, allow_nan=False)  # strict JSON, no NaN


def test_holm_across_pairs_and_pratt_zeros():
    rng = np.random.default_rng(0)
    base = simulate_ab_ratings(10, 12, 12, rng=2)
    c = base[base.system == "b"].assign(system="c", score=lambda d: np.clip(d.score + rng.integers(0, 2, len(d)), 1, 5))
    res = analyse(pd.concat([base, c.assign(trial=c.trial + 10_000)]))
    # b and c are never in one trial here, so (b, c) uses all their ratings; three pairs are corrected together
    assert len(res["comparisons"]) == 3
    from statsmodels.stats.multitest import multipletests

    p = [x["p_mixed"] for x in res["comparisons"]]
    np.testing.assert_allclose([x["p_holm"] for x in res["comparisons"]], multipletests(p, method="holm")[1])
    # identical systems → every utterance difference is zero: Pratt gives p = 1 instead of dropping them
    same = base.assign(score=3)
    res = analyse(same)
    assert res["comparisons"][0]["p_wilcoxon"] == 1.0


def test_cluster_ci_is_wider_than_naive():
    df = simulate_ab_ratings(10, 20, 20, rng=3)
    a = df[df.system == "a"]
    mean, se, dof = cluster_mean_ci(a.score.to_numpy(), a.rater.to_numpy(), a.utterance.to_numpy())
    naive = a.score.std(ddof=1) / np.sqrt(len(a))
    assert se > 1.5 * naive and dof == 9


def _with_qc(df: pd.DataFrame, bad: str) -> pd.DataFrame:
    """Add one attention trial per rater: the `bad` rater scores the anchor above natural speech."""
    rows = []
    for i, rater in enumerate(sorted(df.rater.unique())):
        nat, anc = (2, 5) if rater == bad else (5, 1)
        trial = 90_000 + i
        rows += [dict(rater=rater, utterance="u000", system="a", score=nat, position="A", trial=trial,
                      kind="attention"),
                 dict(rater=rater, utterance="u000", system="anchor", score=anc, position="B", trial=trial,
                      kind="attention")]
    return pd.concat([df.assign(kind="regular"), pd.DataFrame(rows)], ignore_index=True)


def test_screening_flags_and_exclusion():
    df = simulate_ab_ratings(10, 20, 20, diff=0.5, rng=5)
    df.loc[df.rater == "r009", "score"] = 3  # a straight-liner
    df = _with_qc(df, bad="r002")
    res = analyse(df)
    table = {r["rater"]: r for r in res["screening"]}
    assert table["r002"]["flagged"] and "attention" in table["r002"]["reasons"]
    assert table["r009"]["flagged"] and "variance" in table["r009"]["reasons"]
    assert sum(r["flagged"] for r in table.values()) == 2
    excluded = analyse(df, config=__import__("obt_eval.study.statistics", fromlist=["StatsConfig"]).StatsConfig(
        exclude_flagged=True))
    assert excluded["excluded_raters"] == ["r002", "r009"] and excluded["n_raters"] == 8
    assert res["n_ratings"] == len(df[df.kind == "regular"])  # QC rows never enter the comparison


def test_preferences():
    df = simulate_ab_ratings(8, 10, 10, diff=1.0, rng=6)
    pref = df.groupby("trial").apply(
        lambda t: "none" if t.score.nunique() == 1 else t.loc[t.score.idxmax(), "position"], include_groups=False)
    df["preference"] = df.trial.map(pref)
    (p,) = analyse(df)["preferences"]
    assert p["a_preferred"] > p["b_preferred"] and p["n"] == df.trial.nunique()
    assert p["share_a_ci95"][0] < p["share_a"] < p["share_a_ci95"][1] and p["p_binomial"] < 0.05


def test_csv_neutralises_formulas_and_round_trips(tmp_path):
    assert neutralise("=HYPERLINK(1)") == "'=HYPERLINK(1)" and neutralise("+1") == "'+1" and neutralise(3) == 3
    df = simulate_ab_ratings(3, 4, 2, rng=0)
    df["utterance"] = ["=cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "plain"] * (len(df) // 4)
    df["study"] = "s"
    out = write_ratings_csv(df, tmp_path / "r.csv", {"question": "q"})
    text = out.read_text()
    assert "\n=" not in text and ",=" not in text and ",@" not in text and ",-2" not in text
    back = read_ratings_csv(out)
    assert back.utterance.tolist() == df.utterance.tolist()
    assert json.loads((tmp_path / "r.protocol.json").read_text()) == {"question": "q"}


def test_stats_cli_json_last_line(tmp_path):
    df = simulate_ab_ratings(8, 10, 10, diff=0.5, rng=7)
    write_ratings_csv(df[["rater", "utterance", "system", "score"]], tmp_path / "min.csv")
    result = CliRunner().invoke(build_app(), ["stats", str(tmp_path / "min.csv"), "--json"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout.strip().splitlines()[-1])
    assert {s["system"] for s in res["systems"]} == {"a", "b"} and res["comparisons"][0]["p_mixed"] is not None
    missing = tmp_path / "bad.csv"
    missing.write_text("rater,score\nr1,3\n")
    bad = CliRunner().invoke(build_app(), ["stats", str(missing)])
    assert bad.exit_code != 0 and "utterance" in str(bad.exception)


def test_analysis_without_any_preference_answer():
    """The preference question is optional: a study where nobody answered it still analyses."""
    df = simulate_ab_ratings(6, 8, 8, diff=0.0, rng=3)
    df["preference"] = None
    res = analyse(df)
    assert res["preferences"] == [] and len(res["comparisons"]) == 1
    assert all(s["n"] > 0 for s in res["systems"])
