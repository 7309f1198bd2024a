"""Language identification (tiny random MMS-LID-style checkpoint, loaded by path) and language codes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mms_helpers import make_corpus, tone

from obt_eval.atomic import read_json
from obt_eval.corpus import Corpus
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.mms.languages import accepted_codes, same_language, to_iso639_3
from obt_eval.mms.lid import LanguageIdentifier, identify_corpus
from obt_eval.mms.toy import make_lid
from obt_eval_cli.main import main as cli_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LABELS = ["por", "grn", "eng", "gug"]


def test_language_codes():
    assert to_iso639_3("pt-BR") == "por" and to_iso639_3("pt_br") == "por" and to_iso639_3("pt-br+f3") == "por"
    assert to_iso639_3("gn") == "grn" and to_iso639_3("mav") == "mav" and to_iso639_3("ger") == "deu"
    assert to_iso639_3("") is None and to_iso639_3(None) is None and to_iso639_3(float("nan")) is None
    assert to_iso639_3("Portuguese") is None and to_iso639_3("xx") is None
    assert same_language("gug", "grn") and same_language("grn", "gug") and same_language("gui", "gug")
    assert not same_language("por", "grn") and "cmn" in accepted_codes("zho")


@pytest.fixture(scope="module")
def lid_path(tmp_path_factory):
    return make_lid(tmp_path_factory.mktemp("lid"), LABELS)


@pytest.fixture
def corpus(tmp_path, workspace):
    items = {"pt0": (tone(1.2, 130), "pt-br", "um"), "pt1": (tone(0.7, 200, 1), "pt", "dois"),
             "gn0": (tone(1.5, 170, 2), "gn", "peteĩ"), "xx0": (tone(0.9, 110, 3), "", "três")}
    return make_corpus(tmp_path, workspace, "lidc", items)


def test_top3_flags_and_manifest_columns(lid_path, corpus):
    lid = LanguageIdentifier(str(lid_path), device="cpu")
    assert lid.labels == LABELS and lid.revision.startswith("sha256:")
    before = corpus.manifest.copy()
    report = identify_corpus(corpus, lid, progress=False)
    manifest = Corpus.open(corpus.root).manifest
    pd.testing.assert_frame_equal(manifest[before.columns], before)  # other columns kept as they were
    assert report.scored == 4 and not report.problems
    for row in manifest.itertuples():
        top3 = json.loads(row.lid_top3)
        probs = [p for _, p in top3]
        assert len(top3) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert {lab for lab, _ in top3} <= set(LABELS)
        assert row.lid_top1 == top3[0][0] and row.lid_top1_prob == pytest.approx(top3[0][1])
        expected = to_iso639_3(row.language)
        if expected is None:
            assert pd.isna(row.lid_flag)
        else:
            assert bool(row.lid_flag) == (not same_language(row.lid_top1, expected))
    assert manifest["lid_flag"].dtype == "boolean"
    info = read_json(corpus.root / "corpus.json")
    flagged = set(manifest.loc[manifest["lid_flag"].fillna(False), "id"])
    assert {f["id"] for f in info["lid"]["flagged"]} == flagged and info["lid"]["no_expected_language"] == 1
    assert info["name"] == "lidc"  # the ingest summary is still there


def test_expected_override_and_resume(lid_path, corpus):
    lid = LanguageIdentifier(str(lid_path), device="cpu")
    first = identify_corpus(corpus, lid, progress=False)
    top1 = Corpus.open(corpus.root).manifest.set_index("id")["lid_top1"]
    heard = top1.iloc[0]
    never = next(lab for lab in ("eng", "por", "grn") if lab not in set(top1) and not any(
        same_language(t, lab) for t in set(top1)))
    again = identify_corpus(corpus, lid, expected=never, progress=False)
    assert again.reused == 4 and again.scored == 0 and first.scored == 4
    assert len(again.flagged) == 4  # nothing was heard as `never`
    same = identify_corpus(corpus, lid, expected=heard, progress=False)
    flags = Corpus.open(corpus.root).manifest.set_index("id")["lid_flag"]
    assert not flags[top1.index[0]] and {f["id"] for f in same.flagged} == set(flags[flags].index)
    with pytest.raises(BadInputError, match="cannot read the language"):
        identify_corpus(corpus, lid, expected="Portuguese", progress=False)


def test_lid_cli_and_missing_model(lid_path, corpus, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        cli_main(["lid", "--corpus", "lidc", "--model", str(lid_path), "--json"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["corpus"] == "lidc" and summary["scored"] + summary["reused"] == 4
    assert sum(summary["top1_counts"].values()) == 4
    with pytest.raises(NotFoundError, match="cannot load the language identification model"):
        LanguageIdentifier(str(tmp_path / "missing"), device="cpu")
