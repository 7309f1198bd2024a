"""Ingest: every kind of bad input gets its reason, the rest of the folder is kept, re-runs resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import write_tone_wavs

from obt_eval.corpus import Corpus
from obt_eval.corpus import ingest as ingest_module
from obt_eval.corpus.ingest import IngestOptions, ingest
from obt_eval.errors import BadInputError
from obt_eval_cli.main import run


def _tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


@pytest.fixture
def messy_folder(tmp_path):
    folder = tmp_path / "messy"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "good16k.wav", _tone(1.0, 16_000), 16_000)
    sf.write(folder / "stereo48k.wav", _tone(1.5, 48_000, channels=2), 48_000)
    sf.write(folder / "odd11025.flac", _tone(0.8, 11_025), 11_025)
    sf.write(folder / "sub" / "compressed.ogg", _tone(1.2, 22_050), 22_050)
    sf.write(folder / "song.mp3", _tone(1.1, 44_100), 44_100)
    sf.write(folder / "ñandú kuñataĩ.wav", _tone(0.7, 16_000), 16_000)  # unicode names are kept
    sf.write(folder / "long.wav", _tone(12.0, 8_000), 8_000)
    # bad ones
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notaudio.wav").write_text("this is a text file named .wav")
    sf.write(folder / "silence.wav", np.zeros(16_000, np.float32), 16_000)
    sf.write(folder / "nan.wav", np.full(16_000, np.nan, np.float32), 16_000, subtype="FLOAT")
    sf.write(folder / "inf.wav", np.r_[np.zeros(100), np.inf, np.zeros(15_000)].astype(np.float32), 16_000,
             subtype="FLOAT")
    sf.write(folder / "tiny.wav", _tone(0.02, 16_000), 16_000)  # 320 samples < one 400-sample frame
    sf.write(folder / "verylow.wav", _tone(1.0, 2_000), 2_000)
    data = (folder / "good16k.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 2])
    flac = folder / "cut.flac"
    sf.write(flac, _tone(2.0, 16_000) + 0.01 * np.random.default_rng(0).standard_normal(32_000).astype(np.float32),
             16_000)
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    os.symlink(folder / "missing-target.wav", folder / "dangling.wav")
    (folder / "notes.txt").write_text("not an audio extension: ignored")
    return folder


def test_bad_files_get_reasons_and_the_rest_is_kept(messy_folder, workspace):
    report = ingest(messy_folder, "messy", workspace, options=IngestOptions(max_duration=10.0), progress=False)
    reasons = {os.path.basename(r["file"]): r["reason"] for r in report.rejected}
    expected = {
        "empty.wav": "empty file",
        "notaudio.wav": "not a readable audio file",
        "silence.wav": "silence only",
        "nan.wav": "NaN or infinite",
        "inf.wav": "NaN or infinite",
        "tiny.wav": "too short",
        "verylow.wav": "too low for speech",
        "truncated.wav": "truncated",
        "cut.flac": "corrupt",
        "dangling.wav": "cannot access",
        "long.wav": "too long",
    }
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons.get(name))
    corpus = Corpus.open("messy", workspace)
    assert sorted(corpus.ids) == sorted(["good16k", "stereo48k", "odd11025", "sub__compressed", "song",
                                         "ñandú_kuñataĩ"])
    assert report.found == 17 and report.ingested == 6
    for row in corpus.manifest.itertuples():
        info = sf.info(row.audio_path)
        assert info.samplerate == 16_000 and info.channels == 1
        assert info.frames == row.num_samples
        assert row.num_frames == (row.num_samples - 400) // 320 + 1
    stereo = corpus.row("stereo48k")
    assert stereo.orig_channels == 2 and stereo.orig_sample_rate == 48_000
    assert abs(stereo.num_samples - 24_000) <= 2
    # 16 kHz mono WAV is used in place; converted files are canonical copies inside the workspace
    assert corpus.row("good16k").audio_path == str((messy_folder / "good16k.wav").resolve())
    assert str(workspace.root) in corpus.row("song").audio_path
    summary = report.summary()
    assert summary["rejected"] == len(expected) and summary["rejected_reasons"]["truncated"] == 1


def test_rerun_skips_finished_files(tmp_path, workspace, monkeypatch):
    write_tone_wavs(tmp_path / "a", durations=(1.0, 1.2, 0.9))
    ingest(tmp_path / "a", "a", workspace, progress=False)
    calls = []
    original = ingest_module.convert_file
    monkeypatch.setattr(ingest_module, "convert_file", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    write_tone_wavs(tmp_path / "a", durations=(1.0, 1.2, 0.9, 2.0))  # rewrites the first three, adds one
    (tmp_path / "a" / "utt00.wav").touch()
    os.utime(tmp_path / "a" / "utt01.wav", ns=(1, 1))  # changed mtime -> redone
    os.utime(tmp_path / "a" / "utt02.wav", ns=(1, 1))
    ingest(tmp_path / "a", "a", workspace, progress=False)
    again = [p.name for p in calls]
    calls.clear()
    ingest(tmp_path / "a", "a", workspace, progress=False)
    assert calls == [] and len(again) == 4  # nothing left to do on the third run
    assert len(Corpus.open("a", workspace).manifest) == 4


def test_rerun_with_other_options_rechecks_rejected_files(tmp_path, workspace):
    write_tone_wavs(tmp_path / "o", durations=(1.0, 4.0))
    first = ingest(tmp_path / "o", "o", workspace, options=IngestOptions(max_duration=2.0), progress=False)
    assert [os.path.basename(r["file"]) for r in first.rejected] == ["utt01.wav"]
    second = ingest(tmp_path / "o", "o", workspace, options=IngestOptions(max_duration=10.0), progress=False)
    assert second.rejected == [] and second.ingested == 2  # the hint "raise --max-duration" works


def test_metadata_is_attached_and_checked(tmp_path, workspace):
    write_tone_wavs(tmp_path / "m", durations=(1.0, 1.1, 1.2))
    pd.DataFrame({"utterance_id": ["utt00", "utt01", "ghost"], "speaker": ["ana", "bia", "x"],
                  "language": ["sat", "sat", "sat"], "text": ["a", "b", "c"]}
                 ).to_csv(tmp_path / "meta.csv", index=False)
    report = ingest(tmp_path / "m", "m", workspace, metadata=tmp_path / "meta.csv", progress=False)
    manifest = Corpus.open("m", workspace).manifest.set_index("id")
    assert manifest.loc["utt00", "speaker"] == "ana" and manifest.loc["utt01", "transcript"] == "b"
    assert manifest.loc["utt02", "speaker"] == "unknown"
    assert any("no metadata row" in w for w in report.warnings)
    assert any("match no ingested file" in w for w in report.warnings)

    (tmp_path / "bad.csv").write_text("speaker,language\nana,sat\n")
    with pytest.raises(BadInputError, match="no utterance id column"):
        ingest(tmp_path / "m", "m2", workspace, metadata=tmp_path / "bad.csv", progress=False)
    assert not (workspace.corpus_dir("m2") / "manifest.parquet").exists()


def test_empty_or_missing_folder_is_a_clear_error(tmp_path, workspace):
    with pytest.raises(BadInputError, match="not a folder"):
        ingest(tmp_path / "nope", "x", workspace, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no audio files"):
        ingest(tmp_path / "empty", "x", workspace, progress=False)
    with pytest.raises(BadInputError, match="folder name"):
        ingest(tmp_path / "empty", "bad/name", workspace, progress=False)


def test_cli_json_summary_is_the_last_line(tmp_path, workspace, capsys):
    write_tone_wavs(tmp_path / "c", durations=(1.0, 0.5))
    (tmp_path / "c" / "broken.wav").write_text("nope")
    assert run(["ingest", str(tmp_path / "c"), "--name", "c", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ingested"] == 2 and summary["rejected"] == 1
    assert summary["rejected_files"][0]["reason"].startswith("not a readable audio file")


def test_cli_user_error_exits_2_without_traceback(tmp_path, workspace, capsys):
    assert run(["ingest", str(tmp_path / "missing"), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "what to do" in err


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    from obt_eval.demo_corpus import make_demo_corpus

    out = tmp_path_factory.mktemp("demo")
    make_demo_corpus(out, speakers_per_language=1, sentences_per_language=3)
    return out


@pytest.mark.parametrize("source", ["textgrids", "demo.item"])
def test_alignments_become_a_table_and_an_item_file(small_demo, workspace, source):
    from obt_eval.alignments import read_item_file

    report = ingest(small_demo / "wavs", "d", workspace, metadata=small_demo / "metadata.csv",
                    alignments=small_demo / source, progress=False)
    corpus = Corpus.open("d", workspace)
    table = corpus.alignments()
    assert report.alignments == len(corpus.ids) == 6
    assert set(table["id"]) == set(corpus.ids)
    durations = corpus.manifest.set_index("id")["duration"]
    assert (table["offset"] <= table["id"].map(durations) + 0.02).all() and (table["onset"] < table["offset"]).all()
    items = read_item_file(corpus.item_path)
    reference = read_item_file(small_demo / "demo.item")
    assert len(items) == len(reference) and set(items["speaker"]) == set(corpus.manifest["speaker"])


def test_broken_and_overlong_alignments_are_dropped_with_warnings(small_demo, tmp_path, workspace):
    import shutil

    from obt_eval.alignments import read_textgrid, write_textgrid

    grids = tmp_path / "grids"
    shutil.copytree(small_demo / "textgrids", grids)
    first, second, *_ = sorted(grids.glob("*.TextGrid"))
    first.write_text("File type = \"ooTextFile\"\nthis is not a TextGrid")
    intervals = read_textgrid(second)
    end = intervals[-1][1]
    write_textgrid(second, [*intervals, (end + 5.0, end + 5.5, "a")], xmax=end + 6.0)
    report = ingest(small_demo / "wavs", "w", workspace, alignments=grids, progress=False)
    assert any("could not be read" in w and first.name in w for w in report.warnings)
    assert any("end after their audio" in w for w in report.warnings)
    assert report.ingested == 6 and report.alignments == 5  # the broken file's utterance has no alignment


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    from obt_eval.atomic import atomic_path, write_json

    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~ingest_module_umask()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no b.json, no temp file left


def ingest_module_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name, content, kind", [
    ("meta.json", b'{"utterances": [{"id": "utt00", "speaker": "secret-speaker-name"}]}\n', "JSON"),
    ("meta.xlsx", b"PK\x03\x04secret-speaker-name" + bytes(range(256)), "spreadsheet"),
    ("meta.csv", b"secret-speaker-name said: the password is hunter2\n", "single field"),
    ("meta.txt", b"secret-speaker-name, hunter2 is the password, see you soon\n", "do not look like column names"),
])
def test_a_non_csv_metadata_file_is_described_not_quoted(tmp_path, workspace, name, content, kind):
    write_tone_wavs(tmp_path / "m", durations=(1.0,))
    (tmp_path / name).write_bytes(content)
    with pytest.raises(BadInputError, match=kind) as info:
        ingest(tmp_path / "m", "m", workspace, metadata=tmp_path / name, progress=False)
    assert "secret" not in str(info.value) and "hunter2" not in str(info.value)
    assert "CSV" in str(info.value)
