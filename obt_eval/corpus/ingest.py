"""Ingest a folder of recordings into a corpus: checks, mono 16 kHz audio, segments, metadata, alignments.

Each file is streamed block by block (downmix, NaN/inf and silence checks, soxr resampling), so a
multi-hour recording never sits in memory. Files that are already 16 kHz mono WAV/FLAC are used in
place; everything else gets a canonical copy under ``corpora/<name>/audio/``. With segmenting on, a
file longer than the threshold (a whole chapter) is cut at pauses into segment WAVs under
``corpora/<name>/segments/<source id>/``, and each segment becomes an utterance that records its
source and its start and end in it. Every rejected file gets a reason and the rest of the folder
goes on. A progress log makes a re-run skip finished files, but only those whose outputs still match
the size and checksum recorded when they were written: a re-run re-creates a damaged or missing
canonical copy or segment. The tables' checksums go to ``corpus.json`` (obt_eval.corpus.files).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr
from tqdm import tqdm

from obt_eval.atomic import atomic_path
from obt_eval.audio import AUDIO_EXTENSIONS
from obt_eval.corpus.checks import Rejected, check_readable, wav_declared_data_bytes
from obt_eval.corpus.files import audio_problem, write_info, write_manifest, write_table
from obt_eval.corpus.manifest import MANIFEST_COLUMNS, SOURCE_COLUMNS, Corpus
from obt_eval.corpus.metadata import read_metadata
from obt_eval.corpus.segment import SegmentOptions, segment_recording, write_segment_audio
from obt_eval.errors import BadInputError
from obt_eval.frames import SAMPLE_RATE, WINDOW, num_frames
from obt_eval.integrity import file_checksum
from obt_eval.provenance import provenance
from obt_eval.workspace import Workspace, check_name, safe_name

BLOCK = 1 << 18  # samples per streamed block (~5 s at 48 kHz)


@dataclass(frozen=True)
class IngestOptions:
    max_duration: float = 3 * 3600.0  # seconds; longer files are rejected with a hint to split them
    min_sample_rate: int = 4000  # below this a file cannot hold intelligible speech
    silence_dbfs: float = -60.0  # a file whose peak stays below this is "silence only"
    copy_audio: bool = False  # True: always write a canonical copy, even for 16 kHz mono WAV/FLAC
    workers: int = 2
    segmenting: SegmentOptions | None = None  # cut long files at pauses; None keeps every file whole
    phones_at_cuts: str = "drop"  # a phone interval crossing a segment cut is "drop"ped or "clip"ped

    def __post_init__(self) -> None:
        if self.phones_at_cuts not in ("drop", "clip"):
            raise BadInputError(f"unknown --phones-at-cuts {self.phones_at_cuts!r}", "use drop or clip")


@dataclass
class IngestReport:
    corpus: str
    path: str
    found: int = 0
    ingested: int = 0
    rejected: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hours: float = 0.0
    speakers: int = 0
    alignments: int = 0
    utterances: int = 0  # manifest rows: segments plus files kept whole
    segmenting: bool = False
    segmented_files: int = 0
    segments: int = 0
    source_hours: float = 0.0  # audio of the ingested files; `hours` is what the utterances hold
    stretches: list[dict] = field(default_factory=list)  # reported stretches of segmented files

    def summary(self) -> dict:
        reasons = Counter(r["reason"].split(":")[0].split("(")[0].strip() for r in self.rejected)
        out = {
            "corpus": self.corpus, "path": self.path, "found": self.found, "ingested": self.ingested,
            "rejected": len(self.rejected), "rejected_reasons": dict(reasons), "rejected_files": self.rejected,
            "hours": round(self.hours, 4), "speakers": self.speakers, "aligned_utterances": self.alignments,
            "utterances": self.utterances, "warnings": self.warnings, "segmentation": None,
        }
        if self.segmenting:
            out["segmentation"] = {
                "segmented_files": self.segmented_files, "whole_files": self.ingested - self.segmented_files,
                "segments": self.segments, "source_hours": round(self.source_hours, 4),
                "left_out_hours": round(max(0.0, self.source_hours - self.hours), 4),
                "stretch_kinds": dict(Counter(s["kind"] for s in self.stretches)), "stretches": self.stretches,
            }
        return out


def find_audio_files(audio_dir: Path) -> list[Path]:
    return sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and not p.is_dir())


def utterance_id(path: Path, audio_dir: Path) -> str:
    """Relative path without extension, folders joined by '__', made file-system safe."""
    rel = path.relative_to(audio_dir).with_suffix("")
    return safe_name("__".join(rel.parts))


def _stat_key(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def convert_file(src: Path, dst: Path, opts: IngestOptions) -> dict:
    """Check `src` and produce its canonical 16 kHz mono audio (at `dst` unless usable in place)."""
    check_readable(src)
    try:
        info = sf.info(str(src))
    except Exception as exc:
        raise Rejected(f"not a readable audio file ({_libsndfile_message(exc)})") from exc
    if info.frames <= 0:
        raise Rejected("no audio samples in the file")
    if info.samplerate < opts.min_sample_rate:
        raise Rejected(f"sample rate {info.samplerate} Hz is too low for speech (need >= {opts.min_sample_rate} Hz)")
    if info.frames / info.samplerate > opts.max_duration:
        raise Rejected(
            f"too long: {info.frames / info.samplerate / 3600:.2f} h is over --max-duration "
            f"{opts.max_duration / 3600:.2f} h; split the recording or raise --max-duration"
        )
    declared = wav_declared_data_bytes(src)
    if declared and declared[1] < declared[0]:
        raise Rejected(f"truncated: the header declares {declared[0]} data bytes but only {declared[1]} are present")

    in_place = (
        not opts.copy_audio and info.samplerate == SAMPLE_RATE and info.channels == 1
        and info.format in ("WAV", "FLAC")
    )
    size = checksum = None  # the user's own file, used in place: not the corpus's to verify
    if in_place:
        produced = _stream_checked(src, info, None, opts)
        audio_path = src.resolve()
    else:
        subtype = "FLOAT" if info.subtype in ("FLOAT", "DOUBLE") else "PCM_16"
        with atomic_path(dst, suffix=".wav") as tmp:
            with sf.SoundFile(str(tmp), "w", SAMPLE_RATE, 1, subtype=subtype, format="WAV") as out:
                produced = _stream_checked(src, info, out, opts)
            # libsndfile rewrites the header on close, so hash the finished file (still in the page cache)
            size, checksum = tmp.stat().st_size, file_checksum(tmp)
        audio_path = dst.resolve()
    return {
        "audio_path": str(audio_path), "source_path": str(src.resolve()), "num_samples": produced,
        "duration": produced / SAMPLE_RATE, "num_frames": num_frames(produced),
        "orig_sample_rate": info.samplerate, "orig_channels": info.channels,
        "audio_size": size, "audio_checksum": checksum,
    }


def _stream_checked(src: Path, info, out: sf.SoundFile | None, opts: IngestOptions) -> int:
    """Stream `src` block by block: downmix, check, resample, write to `out`; returns 16 kHz samples."""
    resampler = None if info.samplerate == SAMPLE_RATE else soxr.ResampleStream(
        info.samplerate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    peak, produced, read = 0.0, 0, 0
    with sf.SoundFile(str(src)) as f:
        while True:
            try:
                block = f.read(BLOCK, dtype="float32", always_2d=True)
            except Exception as exc:
                message = _libsndfile_message(exc)
                raise Rejected(f"truncated or corrupt audio after {read} samples ({message})") from exc
            last = len(block) < BLOCK
            read += len(block)
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if not np.isfinite(mono).all():
                raise Rejected("contains NaN or infinite samples")
            if mono.size:
                peak = max(peak, float(np.abs(mono).max()))
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            produced += len(mono)
            if out is not None and len(mono):
                out.write(mono)
            if last:
                break
    if read < info.frames:
        raise Rejected(f"truncated: the header declares {info.frames} samples but only {read} could be read")
    if produced < WINDOW:
        raise Rejected(f"too short: {produced / SAMPLE_RATE * 1000:.0f} ms is less than one 25 ms frame")
    if peak <= 10 ** (opts.silence_dbfs / 20):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise Rejected(f"silence only (peak {level}, below {opts.silence_dbfs:.0f} dBFS)")
    return produced


def _libsndfile_message(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1].strip() if text else type(exc).__name__


def ingest(
    audio_dir: str | os.PathLike,
    name: str,
    workspace: Workspace | None = None,
    *,
    metadata: str | os.PathLike | None = None,
    alignments: str | os.PathLike | None = None,
    options: IngestOptions | None = None,
    progress: bool = True,
) -> IngestReport:
    """Ingest every audio file under `audio_dir` as corpus `name`; returns counts and per-file reasons."""
    opts = options or IngestOptions()
    workspace = workspace or Workspace.at()
    check_name(name, "corpus name")
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise BadInputError(f"{audio_dir} is not a folder", "pass the folder that holds the recordings")
    meta_table = read_metadata(metadata) if metadata is not None else None  # fail on a bad CSV before any work

    root = workspace.corpus_dir(name)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    report = IngestReport(corpus=name, path=str(root))
    files = find_audio_files(audio_dir)
    report.found = len(files)
    if not files:
        raise BadInputError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {audio_dir}")

    ids: dict[str, Path] = {}
    jobs: list[tuple[str, Path]] = []
    for path in files:
        uid = utterance_id(path, audio_dir)
        if uid in ids:
            reason = f"duplicate utterance id {uid!r} (same name as {ids[uid]})"
            report.rejected.append({"file": str(path), "reason": reason})
            continue
        ids[uid] = path
        jobs.append((uid, path))

    log_path = root / "ingest-log.jsonl"
    done = _read_log(log_path)
    # a file's outcome depends on the options too: raising --max-duration must re-check a rejected file
    options_key = {k: v for k, v in asdict(opts).items() if k not in ("workers", "phones_at_cuts")}
    if opts.segmenting is None:  # logs written before segmenting existed stay valid
        del options_key["segmenting"]

    def work(job: tuple[str, Path]) -> dict:
        uid, path = job
        try:
            key = _stat_key(path)
        except OSError:
            key = None
        previous = done.get(str(path))
        if previous and previous.get("stat") == key and previous.get("options") == options_key:
            if "reason" in previous:
                return previous
            damaged = _output_problem(previous)
            if damaged is None:
                return _with_checksums(previous)
            report.warnings.append(f"{damaged}: converted {path.name} again")
        try:
            record = {"id": uid, **convert_file(path, root / "audio" / f"{uid}.wav", opts)}
            entry = {"record": record}
            if opts.segmenting is not None and record["duration"] > opts.segmenting.threshold:
                entry.update(segment_file(record, root / "segments" / uid, opts.segmenting, progress))
            else:  # segments of an earlier run with --segment are no longer part of the corpus
                shutil.rmtree(root / "segments" / uid, ignore_errors=True)
        except Rejected as exc:
            entry = {"reason": str(exc)}
        except Exception as exc:  # an unexpected per-file failure must not stop the batch
            entry = {"reason": f"unexpected error: {type(exc).__name__}: {exc}", "retry": True}
        entry.update(file=str(path), stat=key, options=options_key)
        return entry

    outcomes = []
    with open(log_path, "a", encoding="utf-8") as log, ThreadPoolExecutor(max(1, opts.workers)) as pool:
        for entry in tqdm(pool.map(work, jobs), total=len(jobs), desc=f"ingest {name}", unit="file",
                          disable=not progress):
            if entry is not done.get(entry["file"]) and not entry.get("retry"):
                log.write(json.dumps(entry, ensure_ascii=False) + "\n")
                log.flush()
            if "reason" in entry:
                report.rejected.append({"file": entry["file"], "reason": entry["reason"]})
            else:
                outcomes.append(entry)

    if not outcomes:
        raise BadInputError(
            f"none of the {len(files)} audio files under {audio_dir} could be ingested",
            "see the reasons above (--json lists each file)",
        )
    sources = _attach_metadata(pd.DataFrame([e["record"] for e in outcomes]), meta_table, report)
    manifest = _utterances(sources, {e["record"]["id"]: e for e in outcomes}, report)
    sources = sources[sources["id"].isin(manifest["source_id"])]
    sources = _source_table(sources, {e["record"]["id"]: e for e in outcomes})
    if alignments is not None:
        from obt_eval.corpus.alignment_import import import_alignments

        report.alignments = import_alignments(Path(alignments), manifest, root, report.warnings,
                                              sources=sources, phones_at_cuts=opts.phones_at_cuts)
    write_table(root, "sources.parquet", sources)
    write_manifest(root, manifest)
    report.ingested = len(sources)
    report.utterances = len(manifest)
    report.hours = float(manifest["duration"].sum()) / 3600
    report.source_hours = float(sources["duration"].sum()) / 3600
    report.speakers = int(manifest["speaker"].nunique())
    report.segmenting = opts.segmenting is not None
    report.segmented_files = int(sources["segmented"].sum())
    report.segments = int((manifest["source_id"] != manifest["id"]).sum())
    write_info(root, {
        "name": name, "source": str(audio_dir.resolve()),
        "metadata": str(Path(metadata).resolve()) if metadata else None,
        "alignments": str(Path(alignments).resolve()) if alignments else None,
        "options": asdict(opts), **report.summary(), "provenance": provenance(),
    })
    return report


def segment_file(record: dict, folder: Path, opts: SegmentOptions, progress: bool = False) -> dict:
    """Cut one canonical recording into segment WAVs in `folder`; returns the log entry's segment part.

    Segment ids are ``<source id>_seg<NNNN>`` (1-based, in time order), so the same file and options
    always give the same ids. Files of an earlier run with other options are removed.
    """
    uid, audio = record["id"], record["audio_path"]
    with tqdm(total=round(record["duration"], 1), desc=f"VAD {uid}", unit="s", leave=False,
              disable=not progress) as bar:
        def advance(seconds: float) -> None:
            bar.update(round(min(seconds, record["duration"]), 1) - bar.n)

        result = segment_recording(audio, opts, progress=advance)
    if not result.segments:
        raise Rejected(f"{result.stretches[0].reason}: music, noise or silence only? Try --vad energy, or ingest "
                       f"it without --segment")
    ids = [f"{uid}_seg{k:04d}" for k in range(1, len(result.segments) + 1)]
    paths = [folder / f"{sid}.wav" for sid in ids]
    written = write_segment_audio(audio, result.segments, paths)
    keep = {p.name for p in paths}
    for stale in folder.glob("*.wav"):
        if stale.name not in keep:
            stale.unlink()
    segments = []
    for sid, path, seg, (count, size, checksum) in zip(ids, paths, result.segments, written, strict=True):
        start = round(seg.start * SAMPLE_RATE) / SAMPLE_RATE
        segments.append({"id": sid, "audio_path": str(path.resolve()), "num_samples": count, "start": start,
                         "end": start + count / SAMPLE_RATE, "audio_size": size, "audio_checksum": checksum})
    stretches = [{**s.to_dict(), "segment": None if s.segment is None else ids[s.segment]} for s in result.stretches]
    return {"segments": segments, "stretches": stretches, "speech_seconds": round(result.speech_seconds, 3),
            "vad": result.vad}


def _outputs(entry: dict) -> list[dict]:
    """The audio files a log entry made: the canonical copy (or the user's file) and any segments."""
    return [entry["record"], *entry.get("segments", [])]


def _output_problem(entry: dict) -> str | None:
    """Why a finished file must be converted again: an output missing, or not the bytes ingest wrote.

    Hashes every output the corpus owns (a re-run is the repair for damaged audio, so it must look).
    """
    for out in _outputs(entry):
        problem = audio_problem(out["audio_path"], out.get("audio_size"), out.get("audio_checksum"))
        if problem is not None:
            return f"{out['audio_path']}: {problem}"
    return None


def _with_checksums(entry: dict) -> dict:
    """An entry logged before ingest recorded audio checksums gets them from its (intact-looking) outputs.

    The files are trusted as the earlier run left them (as that run's resume did); from now on they are
    verified. A new entry is returned, so the caller logs it.
    """
    if all("audio_checksum" in out for out in _outputs(entry)):
        return entry
    updated = json.loads(json.dumps(entry))
    for out in _outputs(updated):
        if "audio_checksum" not in out:
            owned = out is not updated["record"] or _owned(out)
            out["audio_size"] = Path(out["audio_path"]).stat().st_size if owned else None
            out["audio_checksum"] = file_checksum(out["audio_path"]) if owned else None
    return updated


def _owned(record: dict) -> bool:
    """Whether a record's audio is a canonical copy the corpus wrote (not the user's file used in place)."""
    return Path(record["audio_path"]) != Path(record["source_path"])


def _utterances(sources: pd.DataFrame, outcomes: dict[str, dict], report: IngestReport) -> pd.DataFrame:
    """Manifest rows: each segment of a segmented file (inheriting its metadata), each other file whole.

    A chapter's transcript cannot be split by time, so segments get an empty transcript; the
    chapter's stays in ``sources.parquet``.
    """
    rows = []
    for src in sources.to_dict("records"):
        entry = outcomes[src["id"]]
        if "segments" not in entry:
            rows.append({**src, "source_id": src["id"], "segment_start": 0.0, "segment_end": src["duration"]})
            continue
        for seg in entry["segments"]:
            rows.append({**src, "id": seg["id"], "audio_path": seg["audio_path"], "num_samples": seg["num_samples"],
                         "duration": seg["num_samples"] / SAMPLE_RATE, "num_frames": num_frames(seg["num_samples"]),
                         "transcript": "", "source_id": src["id"], "segment_start": seg["start"],
                         "segment_end": seg["end"], "audio_size": seg["audio_size"],
                         "audio_checksum": seg["audio_checksum"]})
        report.stretches += [{"file": src["source_path"], "source_id": src["id"], **s} for s in entry["stretches"]]
    manifest = pd.DataFrame(rows)
    clash = manifest["id"].duplicated(keep=False) & (manifest["id"] == manifest["source_id"])
    for row in manifest[clash].itertuples():  # a file named like another file's segment
        report.rejected.append({"file": row.source_path, "reason": f"duplicate utterance id {row.id!r} "
                                                                    f"(a segment of another file has that id)"})
    manifest = manifest[~clash].reset_index(drop=True)
    return manifest[MANIFEST_COLUMNS]


def _source_table(sources: pd.DataFrame, outcomes: dict[str, dict]) -> pd.DataFrame:
    """The segment map's file side: one row per ingested file, with its metadata and what it became."""
    table = sources.rename(columns={"id": "source_id"}).copy()
    entries = [outcomes[uid] for uid in sources["id"]]
    table["segmented"] = ["segments" in e for e in entries]
    table["segments"] = [len(e.get("segments", [])) for e in entries]
    table["speech_seconds"] = [e.get("speech_seconds", float("nan")) for e in entries]
    table["vad"] = [e.get("vad", "") for e in entries]
    return table[SOURCE_COLUMNS]


def _read_log(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            done[entry["file"]] = entry
    return done


def _attach_metadata(manifest: pd.DataFrame, table: pd.DataFrame | None, report: IngestReport) -> pd.DataFrame:
    defaults = {"speaker": "unknown", "language": "", "split": "", "transcript": ""}
    if table is None:
        return manifest.assign(**defaults)
    by_key: dict[str, int] = {}
    for i, key in enumerate(table["utterance_id"]):
        by_key[safe_name(Path(str(key)).with_suffix("").as_posix().replace("/", "__"))] = i
        by_key[safe_name(Path(str(key)).stem)] = i
    rows, matched = [], set()
    for uid, source in zip(manifest["id"], manifest["source_path"], strict=True):
        i = by_key.get(uid, by_key.get(safe_name(Path(source).stem)))
        if i is None:
            rows.append(defaults)
            continue
        matched.add(i)
        rows.append({col: (table.at[i, col] if col in table and pd.notna(table.at[i, col]) else default)
                     for col, default in defaults.items()})
    missing = len(manifest) - sum(1 for r in rows if r is not defaults)
    if missing:
        report.warnings.append(f"{missing} ingested files have no metadata row (speaker 'unknown')")
    unmatched = len(table) - len(matched)
    if unmatched:
        report.warnings.append(f"{unmatched} metadata rows match no ingested file")
    extra = pd.DataFrame(rows, index=manifest.index).astype(str)
    return pd.concat([manifest, extra], axis=1)


def remove_corpus(name: str, workspace: Workspace) -> None:
    """Delete an ingested corpus folder (its canonical copies included; sources are never touched)."""
    Corpus.open(name, workspace)
    shutil.rmtree(workspace.corpus_dir(name))
