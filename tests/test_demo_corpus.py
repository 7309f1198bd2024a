"""The espeak demo corpus: deterministic, alignments that match the audio, consistent metadata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from obt_eval.alignments import read_item_file, read_textgrid
from obt_eval.demo_corpus import SENTENCES, make_demo_corpus
from obt_eval.errors import BadInputError
from obt_eval.espeak import synthesize

SMALL = dict(languages=("pt-br", "gn"), speakers_per_language=2, sentences_per_language=3, seed=7)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "corpus"
    return make_demo_corpus(out, **SMALL)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(corpus, tmp_path):
    again = make_demo_corpus(tmp_path / "again", **SMALL)
    assert _files(again.out_dir) == _files(corpus.out_dir)
    other = make_demo_corpus(tmp_path / "other", **{**SMALL, "seed": 8, "sentences_per_language": 1})
    name = "wavs/gn_m3_000.wav"
    assert _files(other.out_dir)[name] != _files(corpus.out_dir)[name]


def test_espeak_is_deterministic_within_a_process():
    # espeak keeps synthesis state between calls; a fresh library instance per call must hide it.
    first = synthesize("Bom dia, meu amigo.", "pt-br+f3", rate=160, seed=3)
    synthesize("Mbarakaja oke hína.", "gn+klatt2", rate=190, seed=5)
    second = synthesize("Bom dia, meu amigo.", "pt-br+f3", rate=160, seed=3)
    assert np.array_equal(first.audio, second.audio) and first.events == second.events
    assert first.sample_rate == 22050 and first.events[0].mnemonic == "b"


def test_layout_metadata_and_files_agree(corpus):
    root = corpus.out_dir
    meta = pd.read_csv(root / "metadata.csv")
    assert list(meta.columns) == ["utterance_id", "speaker", "language", "split", "transcript"]
    assert len(meta) == corpus.num_utterances == 2 * 2 * 3
    assert {p.stem for p in (root / "wavs").glob("*.wav")} == set(meta["utterance_id"])
    assert {p.stem for p in (root / "textgrids").glob("*.TextGrid")} == set(meta["utterance_id"])
    assert set(meta["language"]) == {"pt-br", "gn"}
    assert meta.groupby("language")["speaker"].nunique().to_dict() == {"gn": 2, "pt-br": 2}
    assert set(meta["split"]) == {"train", "dev", "test"}
    # a sentence never sits in two splits, and every speaker says every sentence
    assert (meta.groupby("transcript")["split"].nunique() == 1).all()
    assert (meta.groupby("transcript")["speaker"].nunique() == 2).all()
    for row in meta.itertuples():
        assert row.transcript in SENTENCES[row.language]
        assert row.speaker.startswith(row.language + "+")
    assert "GPL" in (root / "README.txt").read_text(encoding="utf-8")
    assert not list(root.parent.glob(".corpus.*"))  # no staging folders left behind


def test_alignments_match_the_audio(corpus):
    meta = pd.read_csv(corpus.metadata_path)
    inside, pauses = [], []
    for uid in meta["utterance_id"]:
        wave, sr = sf.read(corpus.wav_dir / f"{uid}.wav", dtype="float32")
        assert sr == 16000 and wave.ndim == 1
        assert sf.info(str(corpus.wav_dir / f"{uid}.wav")).subtype == "PCM_16"
        duration = len(wave) / sr
        phones = read_textgrid(corpus.textgrid_dir / f"{uid}.TextGrid")
        assert len(phones) >= 5
        onsets = [a for a, _, _ in phones]
        assert onsets == sorted(onsets) and len(set(onsets)) == len(onsets)
        assert all(b > a for a, b, _ in phones)
        assert all(b1 <= a2 + 1e-9 for (_, b1, _), (a2, _, _) in zip(phones, phones[1:], strict=False))
        assert all(p and "ˈ" not in p and "ˌ" not in p for _, _, p in phones)
        assert phones[-1][1] <= duration - 0.03  # >= 30 ms trailing silence
        tail = wave[-int(0.03 * sr):]
        assert np.abs(tail).max() < 0.01 and np.count_nonzero(tail) > 0  # quiet, not digital silence
        for a, b, _ in phones:
            inside.append(np.sqrt(np.mean(wave[int(a * sr):int(b * sr)] ** 2)))
        pauses.append(np.sqrt(np.mean(wave[: int(phones[0][0] * sr)] ** 2)))
        # espeak's pauses (gaps between phones) must be silent in the audio: times are not shifted
        for (_, b1, _), (a2, _, _) in zip(phones, phones[1:], strict=False):
            if a2 - b1 >= 0.04:
                gap = wave[int((b1 + 0.01) * sr):int((a2 - 0.01) * sr)]
                pauses.append(np.sqrt(np.mean(gap**2)))
    assert len(pauses) > len(meta)
    assert np.median(inside) > 10 * np.max(pauses)  # vowel decay reaches into pauses: 10x, not 100x


def test_item_file_matches_textgrids_and_speakers(corpus):
    items = read_item_file(corpus.item_path)
    meta = pd.read_csv(corpus.metadata_path).set_index("utterance_id")
    assert len(items) == corpus.num_items > 100
    assert (items["speaker"] == meta.loc[items["file"], "speaker"].to_numpy()).all()
    first = items["file"].iloc[0]
    phones = read_textgrid(corpus.textgrid_dir / f"{first}.TextGrid")
    got = items[items["file"] == first]
    assert got["phone"].tolist() == [p for _, _, p in phones[1:-1]]
    assert got["prev"].tolist() == [p for _, _, p in phones[:-2]]
    assert got["next"].tolist() == [p for _, _, p in phones[2:]]
    # Guarani's puso (glottal stop) is a phone; stress does not split phone categories
    assert "ʔ" in set(items.loc[items["file"].str.startswith("gn_"), "phone"])
    assert "e" in corpus.phone_inventory and "ˈe" not in corpus.phone_inventory


def test_words_tier_follows_the_transcript(corpus):
    meta = pd.read_csv(corpus.metadata_path)
    row = meta[meta["language"] == "gn"].iloc[0]
    words = [w for _, _, w in read_textgrid(corpus.textgrid_dir / f"{row.utterance_id}.TextGrid", tier="words")]
    assert words == [t.strip(".,?!") for t in row.transcript.split()]


def test_bad_arguments_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(BadInputError, match="no demo sentences for language 'xx'"):
        make_demo_corpus(tmp_path / "a", languages=("xx",))
    with pytest.raises(BadInputError, match="speakers per language"):
        make_demo_corpus(tmp_path / "a", speakers_per_language=0)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(BadInputError, match="not empty"):
        make_demo_corpus(tmp_path / "mine", sentences_per_language=1, speakers_per_language=1)
    assert (tmp_path / "mine" / "thesis.txt").exists()


def test_rebuild_replaces_an_older_demo_corpus(tmp_path):
    out = tmp_path / "demo"
    make_demo_corpus(out, languages=("gn",), speakers_per_language=2, sentences_per_language=2)
    info = make_demo_corpus(out, languages=("gn",), speakers_per_language=1, sentences_per_language=1)
    assert sorted(p.name for p in (out / "wavs").iterdir()) == ["gn_m3_000.wav"]
    assert info.num_utterances == 1 and not list(tmp_path.glob(".demo.*"))


def test_cli_writes_corpus_and_json_summary(tmp_path, capsys):
    from obt_eval_cli.main import main

    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-corpus", str(out), "--languages", "gn", "--speakers", "1", "--sentences", "2", "--json"])
    assert exit_info.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_utterances"] == 2 and summary["speakers"] == ["gn+m3"]
    assert summary["ingest_command"].startswith(f"obt-eval ingest {out / 'wavs'} --name demo")
    assert (out / "demo.item").exists()
