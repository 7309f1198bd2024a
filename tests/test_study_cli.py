"""A new user's path: create a study from two WAV folders, raters through the API, results, export, stats."""

from __future__ import annotations

import json

import pandas as pd
from study_helpers import make_system_folders, simulate_raters
from typer.testing import CliRunner

from db import open_database
from obt_eval_cli.main import build_app


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_create_rate_results_export_stats_agree(tmp_path, db_url):
    folders = make_system_folders(tmp_path / "wavs", {"xlsr53": 0.1, "mms-300m": 0.7}, utterances=8)
    url = db_url
    common = ["--workspace", str(tmp_path / "ws"), "--db", url]
    created = _run(["study", "create", "--name", "demo", "--system", f"xlsr53={folders['xlsr53']}",
                    "--system", f"mms-300m={folders['mms-300m']}", "--target-ratings", "6", "--block-size", "8",
                    "--seed", "1", "--max-blocks-per-rater", "1", *common, "--json"])
    assert created["ratings_per_stimulus"] == [6, 6] and created["blocks"] == 6
    assert set(created["position_a"].values()) == {24}  # 48 trials, each system at A half of the time

    invited = _run(["study", "invite", "demo", "-n", "2", *common, "--json"])
    assert len({i["invite_token"] for i in invited["invites"]}) == 2

    database = open_database(url)
    simulate_raters(database, 6, {"mms-300m": 0.8}, seed=4, study="demo")
    database.dispose()

    listed = _run(["study", "list", *common, "--json"])["studies"][0]
    assert listed["trials_rated"] == listed["trials"] == created["trials"]

    results = _run(["study", "results", "demo", *common, "--json"])
    out = tmp_path / "demo.csv"
    exported = _run(["study", "export", "demo", str(out), *common, "--json"])
    stats = _run(["stats", str(out), "--json"])

    df = pd.read_csv(out)
    assert exported["rows"] == len(df) == 2 * created["trials"]
    for col in ("study", "rater", "utterance", "system", "score", "trial", "position", "preference", "served_at",
                "submitted_at"):
        assert col in df.columns
    assert json.loads((tmp_path / "demo.protocol.json").read_text())["protocol"]["question"]
    for key in ("systems", "comparisons", "preferences", "n_ratings", "n_raters"):
        assert results[key] == stats[key], key
    (comp,) = results["comparisons"]
    assert {comp["a"], comp["b"]} == {"mms-300m", "xlsr53"}
    mos = {s["system"]: s["mos"] for s in results["systems"]}
    assert mos["mms-300m"] > mos["xlsr53"] and comp["p_mixed"] < 0.05
