"""Corpus checksums: ingest records them for every table (corpus.json) and for the audio the corpus owns
(manifest/sources columns); a damaged table or WAV is named with the ingest command that repairs it, and
re-running ingest re-creates it. Annotation steps rewrite the manifest through the one writer that keeps
the checksum with the file."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from obt_eval.alignments import PhoneInterval, items_from_intervals, write_item_file
from obt_eval.corpus import Corpus
from obt_eval.corpus import files as corpus_files
from obt_eval.corpus import ingest as ingest_module
from obt_eval.corpus.ingest import IngestOptions, ingest
from obt_eval.corpus.segment import SegmentOptions
from obt_eval.integrity import CorruptArtifactError, file_checksum
from obt_eval.quality.annotate import add_corpus_summary, add_manifest_columns
from obt_eval_cli.main import run as cli_run

SR = 16000
TABLES = ("manifest.parquet", "sources.parquet", "alignments.parquet", "corpus.item")
OPTIONS = IngestOptions(segmenting=SegmentOptions(vad="energy", min_seconds=2.0, max_seconds=6.0))


def _voice(seconds: float, f0: float, rng, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * wave + rng.normal(0, 1e-4, t.size)).astype(np.float32)


def overwrite(path, size: int = 64) -> None:
    """Overwrite bytes in the middle (same length: only a checksum can tell)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    data[start:start + size] = bytes((b + 1) % 256 for b in data[start:start + size])
    path.write_bytes(bytes(data))


@pytest.fixture
def folder(tmp_path):
    """A 16 kHz mono file (used in place), a 22.05 kHz stereo one (canonical copy), a 20 s 'chapter' of four
    3.5 s stretches of voice between pauses (cut into segment WAVs), and an item file for the first two."""
    rng = np.random.default_rng(0)
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "inplace.wav", _voice(2.0, 140, rng), SR)
    sf.write(src / "copied.wav", np.stack([_voice(2.0, 180, rng, 22050)] * 2, axis=1), 22050)
    pause = rng.normal(0, 1e-4, int(1.2 * SR)).astype(np.float32)
    chapter = np.concatenate([pause] + [np.concatenate([_voice(3.5, 110 + 20 * k, rng), pause]) for k in range(4)])
    sf.write(src / "chapter.wav", chapter, SR)
    intervals = [PhoneInterval(uid, 0.1 + 0.2 * i, 0.3 + 0.2 * i, "abc"[i % 3]) for uid in ("inplace", "copied")
                 for i in range(8)]
    write_item_file(tmp_path / "phones.item", items_from_intervals(intervals, {"inplace": "s1", "copied": "s2"}))
    return src


def _ingest(folder, workspace):
    return ingest(folder, "c", workspace, alignments=folder.parent / "phones.item", options=OPTIONS, progress=False)


def test_ingest_records_the_checksum_of_every_table_and_of_the_audio_it_owns(folder, workspace):
    _ingest(folder, workspace)
    root = workspace.corpus_dir("c")
    info = json.loads((root / "corpus.json").read_text())
    assert info["checksums"] == {name: file_checksum(root / name) for name in TABLES}
    assert "checksums_pending" not in info
    corpus = Corpus.open("c", workspace)
    m = corpus.manifest.set_index("id")
    segments = m[m["source_id"] == "chapter"]
    assert len(segments) >= 3 and "chapter" not in m.index
    for uid in [*segments.index, "copied"]:
        path = m.at[uid, "audio_path"]
        assert str(path).startswith(str(root))  # the corpus's own files
        assert m.at[uid, "audio_checksum"] == file_checksum(path) and m.at[uid, "audio_size"] == len(
            open(path, "rb").read())
    assert pd.isna(m.at["inplace", "audio_checksum"]) and pd.isna(m.at["inplace", "audio_size"])  # the user's file
    sources = corpus.sources().set_index("source_id")
    assert pd.isna(sources.at["chapter", "audio_checksum"])  # 16 kHz mono chapter: segmented in place
    assert sources.at["copied", "audio_checksum"] == m.at["copied", "audio_checksum"]
    assert len(corpus.wave(segments.index[0])) == segments["num_samples"].iloc[0]


@pytest.mark.parametrize("table", TABLES)
def test_a_damaged_table_is_named_with_the_ingest_command_and_reingest_repairs_it(folder, workspace, table, capsys):
    _ingest(folder, workspace)
    root = workspace.corpus_dir("c")

    def read():
        corpus = Corpus.open("c", workspace)
        return corpus.alignments(), corpus.item_path

    before = read()[0]
    overwrite(root / table, 16)

    with pytest.raises(CorruptArtifactError) as caught:
        read()
    message = str(caught.value)
    assert str(root / table) in message and "is damaged" in message
    assert f"obt-eval ingest {folder.resolve()} --name c --alignments {(folder.parent / 'phones.item').resolve()} " \
           "--segment" in message
    if table in ("manifest.parquet", "sources.parquet"):  # any command that opens the corpus says so, exit 2
        capsys.readouterr()
        assert cli_run(["extract", "--corpus", "c", "--encoder", "mfcc", "--workspace", str(workspace.root)]) == 2
        err = capsys.readouterr().err
        assert f"{root / table} is damaged" in err and "Traceback" not in err
    _ingest(folder, workspace)
    alignments, item = read()
    assert item is not None and len(alignments) == 12
    pd.testing.assert_frame_equal(alignments, before)


def test_a_torn_corpus_json_is_named_and_reingest_rewrites_it(folder, workspace):
    _ingest(folder, workspace)
    info = workspace.corpus_dir("c") / "corpus.json"
    info.write_text(info.read_text()[:40])
    with pytest.raises(CorruptArtifactError, match="corpus.json is damaged: it is not valid JSON") as caught:
        Corpus.open("c", workspace)
    assert "obt-eval ingest AUDIO_DIR --name c" in str(caught.value)
    _ingest(folder, workspace)
    corpus = Corpus.open("c", workspace)
    assert corpus.info["name"] == "c" and set(corpus.info["checksums"]) == set(TABLES)


def test_a_damaged_segment_or_copy_is_named_on_read_and_recreated_by_ingest(folder, workspace, monkeypatch):
    from obt_eval.features.extract import extract_features

    _ingest(folder, workspace)
    corpus = Corpus.open("c", workspace)
    segment = corpus.ids[0] if corpus.ids[0].startswith("chapter_seg") else \
        next(u for u in corpus.ids if u.startswith("chapter_seg"))
    seg_path, copy_path = corpus.audio_path(segment), corpus.audio_path("copied")
    overwrite(seg_path)
    copy_path.write_bytes(copy_path.read_bytes()[:-1000])  # truncated: caught by its size, before any hashing
    with pytest.raises(CorruptArtifactError, match="checksum is") as caught:
        corpus.wave(segment)
    assert str(seg_path) in str(caught.value) and "obt-eval ingest" in str(caught.value)
    with pytest.raises(CorruptArtifactError, match=r"bytes, ingest wrote \d+"):
        corpus.wave("copied")
    assert len(corpus.wave("inplace")) == 2 * SR  # the user's own file is read as it is
    # extraction reads every utterance: the damaged one stops it, named, and no store is reported finished
    with pytest.raises(CorruptArtifactError, match="is damaged"):
        extract_features(corpus, "mfcc", workspace=workspace, progress=False)

    converted = []
    original = ingest_module.convert_file
    monkeypatch.setattr(ingest_module, "convert_file", lambda *a, **k: converted.append(a[0].name) or original(*a, **k))
    report = _ingest(folder, workspace)
    assert sorted(converted) == ["chapter.wav", "copied.wav"]  # the intact in-place file is not redone
    assert any("converted chapter.wav again" in w for w in report.warnings)
    repaired = Corpus.open("c", workspace)
    assert repaired.ids == corpus.ids
    assert len(repaired.wave(segment)) == repaired.row(segment)["num_samples"]
    assert len(repaired.wave("copied")) == repaired.row("copied")["num_samples"]
    assert file_checksum(seg_path) == repaired.row(segment)["audio_checksum"]
    extract_features(repaired, "mfcc", workspace=workspace, progress=False)
    converted.clear()
    _ingest(folder, workspace)  # all intact now: nothing converted
    assert converted == []


def test_annotations_rewrite_the_manifest_with_its_checksum_and_keep_each_others_columns(folder, workspace):
    _ingest(folder, workspace)
    root = workspace.corpus_dir("c")
    ids = Corpus.open("c", workspace).ids

    def annotate(column: str) -> None:
        for step in range(5):
            add_manifest_columns(root, {column: dict.fromkeys(ids, step)})
            add_corpus_summary(root, column, {"step": step})

    threads = [threading.Thread(target=annotate, args=(name,)) for name in ("lid_x", "dnsmos_x")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    corpus = Corpus.open("c", workspace)  # verifies the manifest against the checksum the last writer recorded
    assert (corpus.manifest["lid_x"] == 4).all() and (corpus.manifest["dnsmos_x"] == 4).all()
    info = json.loads((root / "corpus.json").read_text())
    assert info["lid_x"] == info["dnsmos_x"] == {"step": 4} and info["name"] == "c"
    assert info["checksums"]["manifest.parquet"] == file_checksum(root / "manifest.parquet")
    assert set(info["checksums"]) == set(TABLES)


def test_a_writer_killed_between_rename_and_record_leaves_a_corpus_that_opens(folder, workspace, monkeypatch):
    _ingest(folder, workspace)
    root = workspace.corpus_dir("c")
    manifest = pd.read_parquet(root / "manifest.parquet").assign(extra=1)
    real_update = corpus_files.update_info
    calls = []

    def killed_on_second(root_, change):
        calls.append(1)
        if len(calls) == 2:  # after the rename, before the new checksum becomes the recorded one
            raise KeyboardInterrupt
        return real_update(root_, change)

    monkeypatch.setattr(corpus_files, "update_info", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        corpus_files.write_manifest(root, manifest)
    monkeypatch.setattr(corpus_files, "update_info", real_update)
    info = json.loads((root / "corpus.json").read_text())
    assert info["checksums_pending"]["manifest.parquet"] == file_checksum(root / "manifest.parquet")
    assert info["checksums"]["manifest.parquet"] != info["checksums_pending"]["manifest.parquet"]
    assert "extra" in Corpus.open("c", workspace).manifest  # the new manifest, accepted by its pending checksum
    overwrite(root / "manifest.parquet", 16)
    with pytest.raises(CorruptArtifactError):  # matching neither is still damaged
        Corpus.open("c", workspace)


def test_corpora_and_logs_from_before_checksums_still_work(folder, workspace, monkeypatch):
    _ingest(folder, workspace)
    root = workspace.corpus_dir("c")
    # a corpus written before checksums: no "checksums" in corpus.json, no audio columns, log without them
    info = json.loads((root / "corpus.json").read_text())
    del info["checksums"]
    (root / "corpus.json").write_text(json.dumps(info))
    old = pd.read_parquet(root / "manifest.parquet").drop(columns=["audio_size", "audio_checksum"])
    old.to_parquet(root / "manifest.parquet", index=False)
    corpus = Corpus.open("c", workspace)
    seg = next(u for u in corpus.ids if u.startswith("chapter_seg"))
    assert len(corpus.wave(seg)) == corpus.row(seg)["num_samples"]
    log = root / "ingest-log.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    for entry in entries:
        for out in [entry.get("record", {}), *entry.get("segments", [])]:
            out.pop("audio_size", None)
            out.pop("audio_checksum", None)
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))

    converted = []
    original = ingest_module.convert_file
    monkeypatch.setattr(ingest_module, "convert_file", lambda *a, **k: converted.append(a[0].name) or original(*a, **k))
    _ingest(folder, workspace)  # nothing converted again: the outputs are hashed as they are and recorded
    assert converted == []
    corpus = Corpus.open("c", workspace)
    assert corpus.row(seg)["audio_checksum"] == file_checksum(corpus.audio_path(seg))
    assert pd.isna(corpus.row("inplace")["audio_checksum"])
    overwrite(corpus.audio_path(seg))
    with pytest.raises(CorruptArtifactError):
        corpus.wave(seg)
