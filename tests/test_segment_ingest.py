"""`ingest --segment`: segment map, inherited metadata, alignments cut and shifted, MP3 chapters, resume, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from segment_helpers import make_chapter, pause_plan

from obt_eval.alignments import items_from_intervals, read_item_file, read_textgrid, write_item_file
from obt_eval.corpus import Corpus
from obt_eval.corpus import ingest as ingest_module
from obt_eval.corpus.alignment_import import cut_into_segments
from obt_eval.corpus.ingest import IngestOptions, ingest
from obt_eval.corpus.segment import SegmentOptions
from obt_eval.frames import SAMPLE_RATE
from obt_eval_cli.main import run

TOL = 0.05


@pytest.fixture(scope="module")
def clean_demo(tmp_path_factory):
    from obt_eval.demo_corpus import make_demo_corpus

    out = tmp_path_factory.mktemp("demo-clean")
    make_demo_corpus(out, speakers_per_language=2, sentences_per_language=4, noise_dbfs=None)
    return out


@pytest.fixture(scope="module")
def demo_ids(clean_demo):
    return pd.read_csv(clean_demo / "metadata.csv")["utterance_id"].tolist()


def _chapter(clean_demo, ids, path, seed=0):
    return make_chapter(clean_demo, path, ids, pause_plan(len(ids) - 1, 0.6, 1.4, seed=seed), seed=seed)


def _energy(**kw) -> IngestOptions:
    return IngestOptions(segmenting=SegmentOptions(vad="energy", **kw))


def test_segment_map_round_trip_and_inherited_metadata(clean_demo, demo_ids, tmp_path, workspace):
    folder = tmp_path / "in"
    ch = _chapter(clean_demo, demo_ids[:12], folder / "chapter.wav")
    (folder / "chapter.TextGrid").unlink()
    shutil.copy(clean_demo / "wavs" / f"{demo_ids[12]}.wav", folder / "short.wav")  # ~3 s: stays whole
    pd.DataFrame({"utterance_id": ["chapter", "short"], "speaker": ["narrator", "ana"], "split": ["train", "test"],
                  "transcript": ["the whole chapter", "one sentence"]}).to_csv(tmp_path / "meta.csv", index=False)
    report = ingest(folder, "ch", workspace, metadata=tmp_path / "meta.csv",
                    options=IngestOptions(segmenting=SegmentOptions()), progress=False)  # Silero, as a user gets it
    corpus = Corpus.open("ch", workspace)
    m = corpus.manifest
    segs = m[m["source_id"] == "chapter"].reset_index(drop=True)
    summary = report.summary()["segmentation"]
    assert summary["segmented_files"] == 1 and summary["whole_files"] == 1 and summary["segments"] == len(segs) >= 4
    assert segs["id"].tolist() == [f"chapter_seg{k:04d}" for k in range(1, len(segs) + 1)]
    assert (segs["segment_start"].diff().dropna() > 0).all()
    assert set(segs["speaker"]) == {"narrator"} and set(segs["split"]) == {"train"} and set(segs["transcript"]) == {""}

    source, sr = sf.read(ch.path, dtype="int16")
    for row in segs.itertuples():
        audio, rate = sf.read(row.audio_path, dtype="int16")
        a = round(row.segment_start * SAMPLE_RATE)
        assert rate == SAMPLE_RATE and len(audio) == row.num_samples
        np.testing.assert_array_equal(audio, source[a:a + len(audio)])  # the segment IS that stretch of the source
        assert row.segment_end == pytest.approx(row.segment_start + row.duration, abs=1e-9)
        assert row.num_frames == (row.num_samples - 400) // 320 + 1
        assert not any(s0 < row.segment_start < s1 or s0 < row.segment_end < s1 for s0, s1 in ch.speech)
    assert corpus.trace("chapter_seg0002") == {
        "id": "chapter_seg0002", "source_id": "chapter", "source_path": str(ch.path.resolve()),
        "start": segs.loc[1, "segment_start"], "end": segs.loc[1, "segment_end"]}

    short = corpus.row("short")
    assert short.source_id == "short" and short.segment_start == 0.0 and short.segment_end == short.duration
    assert short.transcript == "one sentence" and short.speaker == "ana"
    sources = corpus.sources().set_index("source_id")
    assert sources.loc["chapter", "transcript"] == "the whole chapter"  # kept on the map, not on every segment
    assert sources.loc["chapter", "segments"] == len(segs) and bool(sources.loc["chapter", "segmented"])
    assert sources.loc["chapter", "vad"] == "silero" and not bool(sources.loc["short", "segmented"])
    assert 0 < sources.loc["chapter", "speech_seconds"] < sources.loc["chapter", "duration"]


def _expected_phones(clean_demo, ch, manifest) -> pd.DataFrame:
    rows = []
    segs = manifest.sort_values("segment_start")
    for uid, offset in zip(ch.utterances, ch.offsets, strict=True):
        for a, b, p in read_textgrid(clean_demo / "textgrids" / f"{uid}.TextGrid"):
            t = offset + a
            seg = segs[(segs["segment_start"] <= t) & (segs["segment_end"] > t)].iloc[0]
            rows.append((seg["id"], offset + a - seg["segment_start"], offset + b - seg["segment_start"], p))
    return pd.DataFrame(rows, columns=["id", "onset", "offset", "phone"])


@pytest.mark.parametrize("form", ["textgrid", "item"])
def test_whole_file_alignments_are_shifted_into_segments(clean_demo, demo_ids, tmp_path, workspace, form):
    folder, grids = tmp_path / "in", tmp_path / "grids"
    ch = _chapter(clean_demo, demo_ids[:12], folder / "chapter.wav")
    grids.mkdir()
    shutil.move(folder / "chapter.TextGrid", grids / "chapter.TextGrid")
    source = grids
    if form == "item":
        source = tmp_path / "chapter.item"
        write_item_file(source, items_from_intervals(ch.phones, {"chapter": "narrator"}))
    report = ingest(folder, "al", workspace, alignments=source, options=_energy(), progress=False)
    corpus = Corpus.open("al", workspace)
    table = corpus.alignments().sort_values(["id", "onset"]).reset_index(drop=True)
    expected = _expected_phones(clean_demo, ch, corpus.manifest)  # in chapter order
    if form == "item":  # an item file lists only phones with both neighbours: not the chapter's first and last
        expected = expected.iloc[1:-1]
    expected = expected.sort_values(["id", "onset"]).reset_index(drop=True)
    assert len(table) == len(expected) == len(ch.phones) - (2 if form == "item" else 0)  # no phone lost
    assert table["id"].tolist() == expected["id"].tolist() and table["phone"].tolist() == expected["phone"].tolist()
    atol = 1e-6 if form == "textgrid" else 2e-6  # item files hold microseconds
    np.testing.assert_allclose(table[["onset", "offset"]], expected[["onset", "offset"]], atol=atol)
    assert not any("cross a segment cut" in w or "no segment" in w for w in report.warnings)
    assert report.alignments == corpus.manifest["id"].nunique()
    items = read_item_file(corpus.item_path)
    assert set(items["file"]) <= set(corpus.ids)
    durations = corpus.manifest.set_index("id")["duration"]
    assert (items["offset"] <= items["file"].map(durations) + 1e-6).all() and (items["onset"] >= 0).all()


def test_phones_crossing_a_cut_are_dropped_or_clipped():
    manifest = pd.DataFrame({
        "id": ["ch_seg0001", "ch_seg0002", "ch_seg0003", "solo"], "source_id": ["ch", "ch", "ch", "solo"],
        "segment_start": [1.0, 4.0, 9.0, 0.0], "segment_end": [4.0, 8.0, 12.0, 2.0]})
    table = pd.DataFrame({"file": ["ch", "ch", "ch", "ch", "solo"], "onset": [1.5, 3.9, 8.2, 3.995, 1.9],
                          "offset": [1.7, 4.1, 8.4, 4.2, 2.015], "phone": ["a", "b", "c", "d", "e"]})
    dropped, outside, crossing = cut_into_segments(table, manifest, "drop")
    assert (outside, crossing) == (1, 2)
    assert dropped[["id", "phone"]].values.tolist() == [["ch_seg0001", "a"], ["solo", "e"]]
    np.testing.assert_allclose(dropped[["onset", "offset"]], [[0.5, 0.7], [1.9, 2.015]])  # a whole file keeps its end
    clipped, outside, crossing = cut_into_segments(table, manifest, "clip")
    assert (outside, crossing) == (1, 2)
    assert clipped[["id", "phone"]].values.tolist() == [
        ["ch_seg0001", "a"], ["ch_seg0001", "b"], ["ch_seg0002", "b"], ["ch_seg0002", "d"], ["solo", "e"]]
    np.testing.assert_allclose(clipped[["onset", "offset"]],
                               [[0.5, 0.7], [2.9, 3.0], [0.0, 0.1], [0.0, 0.2], [1.9, 2.015]], atol=1e-9)


@pytest.mark.parametrize("mode", ["drop", "clip"])
def test_cuts_inside_speech_drop_or_clip_the_phones_they_cross(clean_demo, demo_ids, tmp_path, workspace, mode):
    folder = tmp_path / "in"
    ch = _chapter(clean_demo, demo_ids[:4], folder / "chapter.wav")
    opts = IngestOptions(segmenting=SegmentOptions(vad="energy", min_seconds=0.5, max_seconds=1.2,
                                                   cut_long_speech=True), phones_at_cuts=mode)
    report = ingest(folder, "cut", workspace, alignments=folder, options=opts, progress=False)
    assert any(s["kind"] == "cut_in_speech" for s in report.stretches)
    crossing = [w for w in report.warnings if "cross a segment cut" in w]
    assert len(crossing) == 1 and (mode in crossing[0] or (mode == "drop" and "dropped" in crossing[0]))
    table = Corpus.open("cut", workspace).alignments()
    kept = float((table["offset"] - table["onset"]).sum())
    total = sum(p.offset - p.onset for p in ch.phones)
    if mode == "clip":  # the parts of a crossing phone add up to the phone
        assert kept == pytest.approx(total, abs=0.01 * int(crossing[0].split()[0]))
    else:
        assert len(table) == len(ch.phones) - int(crossing[0].split()[0]) and kept < total


def test_an_mp3_chapter_is_converted_and_cut_in_its_pauses(clean_demo, demo_ids, tmp_path, workspace):
    folder = tmp_path / "in"
    ch = _chapter(clean_demo, demo_ids[:10], folder / "chapter.mp3", seed=2)
    (folder / "chapter.TextGrid").unlink()
    assert sf.info(ch.path).format == "MP3"  # libsndfile >= 1.1 writes MP3
    report = ingest(folder, "mp3", workspace, options=IngestOptions(segmenting=SegmentOptions()), progress=False)
    corpus = Corpus.open("mp3", workspace)
    assert report.segmented_files == 1 and len(corpus.ids) >= 3
    source = corpus.sources().iloc[0]
    assert str(workspace.root) in source.audio_path and source.source_path == str(ch.path.resolve())
    for row in corpus.manifest.itertuples():  # MP3 coding delay is a few ms: cuts still clear the speech
        assert not any(s0 + TOL < row.segment_start < s1 - TOL or s0 + TOL < row.segment_end < s1 - TOL
                       for s0, s1 in ch.speech)
        assert sf.info(row.audio_path).samplerate == SAMPLE_RATE


def test_rerun_resumes_and_changed_segment_options_redo_the_file(clean_demo, demo_ids, tmp_path, workspace,
                                                               monkeypatch):
    folder = tmp_path / "in"
    _chapter(clean_demo, demo_ids[:10], folder / "chapter.wav")
    calls = []
    original = ingest_module.segment_recording
    monkeypatch.setattr(ingest_module, "segment_recording", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    ingest(folder, "re", workspace, options=_energy(), progress=False)
    first = Corpus.open("re", workspace).ids
    ingest(folder, "re", workspace, options=_energy(), progress=False)
    assert len(calls) == 1 and Corpus.open("re", workspace).ids == first  # nothing redone, same ids
    ingest(folder, "re", workspace, options=_energy(min_seconds=6.0, max_seconds=12.0), progress=False)
    again = Corpus.open("re", workspace)
    assert len(calls) == 2 and len(again.ids) < len(first)  # short sentences joined: fewer, longer segments
    on_disk = sorted(p.stem for p in (workspace.corpus_dir("re") / "segments" / "chapter").glob("*.wav"))
    assert on_disk == sorted(again.ids)  # the earlier run's extra files are gone
    ingest(folder, "re", workspace, progress=False)  # without --segment the chapter is one utterance again
    assert Corpus.open("re", workspace).ids == ["chapter"]
    assert not (workspace.corpus_dir("re") / "segments" / "chapter").exists()


def test_noise_is_rejected_with_a_reason_and_short_files_stay_whole(tmp_path, workspace):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sf.write(folder / "hiss.wav", rng.normal(0, 0.1, 20 * SAMPLE_RATE).astype(np.float32), SAMPLE_RATE)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    sf.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SAMPLE_RATE)
    report = ingest(folder, "n", workspace, options=IngestOptions(segmenting=SegmentOptions()), progress=False)
    (rejected,) = report.rejected
    assert rejected["file"].endswith("hiss.wav") and "no speech found by the silero VAD" in rejected["reason"]
    assert Corpus.open("n", workspace).ids == ["tone"] and report.segmented_files == 0


def test_cli_segment_json_summary_and_bad_options(clean_demo, demo_ids, tmp_path, workspace, capsys):
    folder = tmp_path / "in"
    _chapter(clean_demo, demo_ids[:10], folder / "chapter.wav")
    (folder / "chapter.TextGrid").unlink()
    assert run(["ingest", str(folder), "--name", "c", "--segment", "--vad", "energy", "--segment-max", "8",
                "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    seg = summary["segmentation"]
    assert seg["segmented_files"] == 1 and seg["segments"] == summary["utterances"] >= 3
    assert seg["left_out_hours"] > 0 and seg["stretches"] == [] and seg["stretch_kinds"] == {}
    assert max(Corpus.open("c", workspace).manifest["duration"]) <= 8.0
    assert run(["ingest", str(folder), "--name", "d", "--segment", "--segment-min", "20", "--segment-max", "10"]) == 2
    assert "min < max" in capsys.readouterr().err
    assert run(["ingest", str(folder), "--name", "d", "--segment", "--vad", "webrtc"]) == 2
    assert run(["ingest", str(folder), "--name", "d", "--phones-at-cuts", "keep"]) == 2


def test_the_ingest_job_takes_the_segment_options(clean_demo, demo_ids, tmp_path, workspace, monkeypatch):
    from pipelines.params import ENV_DATA_ROOTS
    from pipelines.steps import parse, run_ingest

    folder = tmp_path / "in"
    _chapter(clean_demo, demo_ids[:10], folder / "chapter.wav")

    class Ctx:
        def __init__(self, ws):
            self.workspace = ws

        def stage(self, *args):
            pass

        def log(self, message):
            pass

    monkeypatch.setenv(ENV_DATA_ROOTS, str(folder))  # recordings outside the workspace must be declared
    params = parse("ingest", {"audio_dir": str(folder), "name": "job", "segment": "true", "segment_max": "6",
                              "vad": "energy"}, workspace)
    assert params.segment is True and params.segment_max == 6.0
    result = run_ingest(params, Ctx(workspace))
    assert result["report"]["segmentation"]["segmented_files"] == 1
    assert max(Corpus.open("job", workspace).manifest["duration"]) <= 6.0


def test_features_are_extracted_from_segments_unchanged(clean_demo, demo_ids, tmp_path, workspace):
    from obt_eval.features.extract import extract_features

    folder = tmp_path / "in"
    _chapter(clean_demo, demo_ids[:8], folder / "chapter.wav")
    ingest(folder, "fx", workspace, options=_energy(), progress=False)
    corpus = Corpus.open("fx", workspace)
    (store,) = extract_features(corpus, "mfcc", workspace=workspace, progress=False).values()
    assert store.lengths() == dict(zip(corpus.manifest["id"], corpus.manifest["num_frames"], strict=True))
