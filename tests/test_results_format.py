"""How the Results tab words an analysis: who leads, by how much, how sure; human column names; safe HTML/CSV."""

from __future__ import annotations

import csv
import io

import pytest
from study_helpers import build_study, simulate_raters

from db.studies import get_study, ratings_frame
from obt_eval.study.statistics import analyse
from webapp import results as RS


def _res(systems, comparisons, screening=(), excluded=()):
    return {"alpha": 0.05, "n_ratings": 120, "n_raters": 6, "n_utterances": 10, "excluded_raters": list(excluded),
            "systems": systems, "comparisons": comparisons, "preferences": [], "screening": list(screening)}


SYSTEMS = [{"system": "xlsr53", "mos": 3.1, "ci95": [2.8, 3.4], "n": 60, "n_raters": 6, "sd": 0.9},
           {"system": "mms-300m", "mos": 3.9, "ci95": [3.6, 4.2], "n": 60, "n_raters": 6, "sd": 0.8}]


def test_the_leader_is_named_with_its_margin_ci_and_a_significant_p():
    comp = {"a": "xlsr53", "b": "mms-300m", "diff": -0.8, "mixed_estimate": -0.78, "mixed_ci95": [-1.1, -0.46],
            "p_mixed": 0.0004, "p_holm": 0.0004, "model": "score ~ system + (1|rater) + (1|utterance)"}
    lead = RS.lead(_res(SYSTEMS, [comp]))
    # the comparison is stored as xlsr53 − mms-300m; the leader's margin is the flipped sign and interval
    assert (lead.leader, lead.runner_up) == ("mms-300m", "xlsr53")
    assert lead.diff == pytest.approx(0.78) and lead.diff_ci == pytest.approx((0.46, 1.1))
    assert lead.significant and lead.p == pytest.approx(0.0004)
    assert lead.verdict.startswith("mms-300m is better than xlsr53 by 0.78 MOS points")
    assert "95 % CI +0.46 to +1.10" in lead.verdict and "p = <0.001" in lead.verdict


def test_a_difference_that_is_not_significant_says_collect_more():
    comp = {"a": "mms-300m", "b": "xlsr53", "diff": 0.2, "mixed_estimate": 0.2, "mixed_ci95": [-0.1, 0.5],
            "p_mixed": 0.21, "p_holm": 0.21}
    lead = RS.lead(_res(SYSTEMS, [comp]))
    assert lead.leader == "mms-300m" and not lead.significant
    assert "not yet a reliable difference" in lead.verdict and "Collect more ratings" in lead.verdict
    assert "+0.20 MOS points over xlsr53" in lead.verdict and "95 % CI -0.10 to +0.50" in lead.verdict


def test_the_reference_does_not_lead_and_one_system_has_nothing_to_compare():
    natural = {"system": "natural", "mos": 4.8, "ci95": [4.6, 5.0], "n": 60, "sd": 0.3}
    comp = {"a": "xlsr53", "b": "mms-300m", "mixed_estimate": -0.8, "mixed_ci95": [-1.1, -0.5], "p_holm": 0.001}
    lead = RS.lead(_res([natural, *SYSTEMS], [comp]), tested=["xlsr53", "mms-300m"])
    assert lead.leader == "mms-300m"
    only = RS.lead(_res(SYSTEMS[:1], []))
    assert only.runner_up is None and "nothing to compare" in only.verdict
    assert RS.lead(_res([], [])).leader is None


def test_tables_have_human_column_names_and_escape_names():
    evil = {"system": "<script>x</script>", "mos": 2.0, "ci95": [1.5, 2.5], "n": 10, "n_raters": 2, "sd": 1.0}
    comp = {"a": "<script>x</script>", "b": "xlsr53", "mixed_estimate": -1.1, "mixed_ci95": [-1.5, -0.7],
            "p_mixed": 0.01, "p_holm": 0.02, "p_paired_t": 0.03, "p_wilcoxon": 0.04, "d_z": -1.2,
            "model": "score ~ system + position + (1 + system | rater) + (1 + system | utterance)"}
    html = RS.tables_html(_res([evil, SYSTEMS[0]], [comp], screening=[
        {"rater": "R-1", "flagged": True, "reasons": "failed 2/2 attention checks"}]), scale=(1, 5))
    for name in ("MOS (1–5)", "95 % CI", "Ratings", "Raters", "Difference A − B (MOS points)", "p (mixed model)",
                 "p (Holm)", "Effect size dz", "Rater screening"):
        assert name in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<li>&lt;script&gt;x&lt;/script&gt; vs xlsr53 — score ~ system + position' in html  # under the table
    assert ">-1.10<" in html and ">-1.50 to -0.70<" in html
    assert RS.mos_columns((0, 10))[1] == "MOS (0–10)"


def test_summary_names_who_was_screened_out_and_why():
    res = _res(SYSTEMS, [], screening=[{"rater": "R-AAA", "flagged": True, "reasons": "score variance 0.00 < 0.1"},
                                       {"rater": "R-BBB", "flagged": False, "reasons": ""}], excluded=["R-AAA"])
    html = RS.summary_html(res, RS.lead(res), {"trials": 40, "trials_rated": 30, "raters": 7})
    assert "R-AAA" in html and "score variance 0.00 &lt; 0.1" in html and "left out of these results" in html
    assert "R-BBB" not in html
    assert "<strong>6</strong> raters" in html and "<strong>120</strong> ratings" in html and "30 of 40" in html


def test_a_real_analysis_becomes_csv_files_one_per_table_and_a_tight_plot(tmp_path):
    database, *_ = build_study(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", utterances=4)
    simulate_raters(database, 4, {"mms-300m": 1.0}, seed=2, careless=1)
    with database.session() as s:
        study = get_study(s, "pilot")
        df, protocol = ratings_frame(s, study), dict(study.protocol)
    res = analyse(df)
    files = RS.download_files("pilot", res, df, protocol)
    assert {"ratings", "systems", "comparisons", "screening", "json"} <= set(files)
    rows = list(csv.DictReader(io.StringIO(files["systems"][1].decode())))
    assert {r["system"] for r in rows} == {s["system"] for s in res["systems"]}
    assert files["comparisons"][0] == "pilot_comparisons.csv"
    assert "variance_components" not in files["comparisons"][1].decode().splitlines()[0]
    uri = RS.plots_html(res, df, RS.scale_of(protocol))
    assert uri.count("data:image/png;base64,") == 2
    database.dispose()


def test_csv_cells_that_would_run_as_formulas_are_neutralised():
    data = RS._csv([{"system": "=HYPERLINK(\"x\")", "mos": 3.0, "ci95": [2.0, 4.0]}]).decode()
    row = next(csv.DictReader(io.StringIO(data)))
    assert row["system"].startswith("'=") and row["ci95"] == "2.0;4.0"
