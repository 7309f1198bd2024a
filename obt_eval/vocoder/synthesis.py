"""Synthesis: load a trained vocoder, turn unit sequences into 16 kHz PCM-16 WAV stimuli.

Inputs are checked before any work (unit ids inside [0, k), non-empty sequences, the same codebook
as the vocoder was trained on, known speakers), because a vocoder fed another encoder's units still
produces audio, just the wrong audio. Every output goes through one `OutputPolicy` (silence, loudness),
so the systems of a listening test differ only in their units and vocoders; a silent or near-silent
output is reported as a problem, by utterance, and not written. ``stimuli.json`` records the checksum
of every WAV: a resumed run re-synthesizes a damaged clip, and readers (study creation, resynthesis
metrics) verify the clips before using them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from obt_eval.atomic import write_json, write_text
from obt_eval.audio import write_wav
from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import BadInputError, NotFoundError, ObtEvalError
from obt_eval.frames import HOP, SAMPLE_RATE
from obt_eval.integrity import file_checksum, verify_file
from obt_eval.provenance import provenance
from obt_eval.units.store import UnitsStore, run_length
from obt_eval.vocoder import checkpoint as ckpt
from obt_eval.vocoder.config import VocoderConfig
from obt_eval.vocoder.data import resolve_corpus
from obt_eval.vocoder.f0 import F0Quantizer, unit_f0
from obt_eval.vocoder.generator import UnitGenerator
from obt_eval.vocoder.postprocess import OutputPolicy, UnusableClip, apply_policy
from obt_eval.workspace import Workspace, safe_name

STIMULI_TABLE = "stimuli.csv"
STIMULI_SIDECAR = "stimuli.json"
logger = logging.getLogger(__name__)


def stimuli_hint(folder: str | os.PathLike) -> str:
    """What to do about a damaged clip: synthesize again into the folder (damaged clips are redone)."""
    return (f"re-run the `obt-eval synthesize` command that wrote {folder} (same options): it re-synthesizes "
            "damaged or missing clips")
PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 autocast on CUDA, fp32 on CPU


@dataclass
class SynthItem:
    """One utterance to synthesize. `f0_hz` is per frame-rate unit (needed by F0-conditioned vocoders)."""

    uid: str
    units: np.ndarray
    speaker: str | None = None
    f0_hz: np.ndarray | None = None
    deduplicate: bool = False  # speak from run-length units with predicted durations


class Vocoder:
    """A trained generator ready for inference (weight norm folded, eval mode)."""

    def __init__(self, generator: UnitGenerator, config: VocoderConfig, meta: dict, device: torch.device,
                 step: int, path: Path | None = None, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise BadInputError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
        # bf16 output differed from fp32 by about -47 dB (random weights); fp32 stays the CPU default: a CPU
        # without native bf16 would run slower, not faster
        self.bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        self.generator = generator
        self.config = config
        self.meta = meta
        self.device = device
        self.step = step
        self.path = path
        self.quantizer = F0Quantizer.from_dict(meta["f0"]) if meta.get("f0") else None

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None,
             precision: str = "auto") -> Vocoder:
        file = ckpt.resolve_generator(path)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        state = ckpt.load_checkpoint(file, map_location="cpu")
        config = VocoderConfig.from_dict(state["config"])
        generator = UnitGenerator(config.generator)
        generator.load_state_dict(state["generator"])
        generator.remove_weight_norm()
        generator.eval().to(dev)
        return cls(generator, config, state["meta"], dev, int(state["step"]), file, precision)

    @property
    def k(self) -> int:
        return self.config.generator.num_units

    @property
    def speakers(self) -> list[str]:
        return list(self.meta.get("speakers") or [])

    @property
    def uses_f0(self) -> bool:
        return self.config.generator.f0_bins > 0

    @property
    def has_durations(self) -> bool:
        return self.config.generator.duration_predictor

    def check_units_store(self, units: UnitsStore) -> None:
        if units.k != self.k or ckpt.codebook_hash(units.codebook) != self.meta.get("codebook_hash"):
            raise BadInputError(
                f"units at {units.path} (k={units.k}, codebook {ckpt.codebook_hash(units.codebook)}) are not the "
                f"units this vocoder was trained on (k={self.k}, codebook {self.meta.get('codebook_hash')}, "
                f"from {self.meta.get('units')})",
                "synthesize with the vocoder trained on these units (one vocoder per encoder and codebook)",
            )

    def check_sequence(self, units: np.ndarray, uid: str = "") -> np.ndarray:
        units = np.asarray(units)
        where = f" of {uid!r}" if uid else ""
        if units.ndim != 1 or units.size == 0:
            raise BadInputError(f"the unit sequence{where} is empty", "give at least one unit per utterance")
        if not np.issubdtype(units.dtype, np.integer):
            raise BadInputError(f"units{where} must be integers, got {units.dtype}")
        if units.min() < 0 or units.max() >= self.k:
            raise BadInputError(
                f"units{where} contain ids outside [0, {self.k}) (min {units.min()}, max {units.max()})",
                f"this vocoder knows k={self.k} units: use units from its codebook",
            )
        return units.astype(np.int64)

    def speaker_id(self, speaker: str | None) -> int | None:
        if not self.speakers:
            return None
        if speaker is None:
            raise BadInputError("this vocoder keeps speaker voices and needs a speaker",
                                f"pass one of its speakers: {', '.join(self.speakers[:10])}")
        if speaker not in self.speakers:
            raise NotFoundError(f"speaker {speaker!r} was not in this vocoder's training data",
                                f"use one of: {', '.join(self.speakers[:20])} (or --speaker to choose a voice)")
        return self.speakers.index(speaker)

    def _prepare(self, item: SynthItem) -> tuple[np.ndarray, int | None, np.ndarray | None]:
        """Frame-rate units, speaker index and F0 levels of one item (durations predicted if asked)."""
        units = self.check_sequence(item.units, item.uid)
        spk = self.speaker_id(item.speaker)
        if self.uses_f0 and item.f0_hz is None:
            raise BadInputError(f"this vocoder is F0-conditioned and {item.uid or 'the item'} has no F0",
                                "synthesize with --corpus so F0 can be taken from the original recording")
        f0_hz = None if item.f0_hz is None else np.asarray(item.f0_hz, dtype=np.float64)
        if item.deduplicate:
            if not self.has_durations:
                raise BadInputError("this vocoder was trained without a duration predictor",
                                    "train with --durations to synthesize from deduplicated units")
            dedup, _ = run_length(units)
            with torch.no_grad():
                spk_t = torch.tensor([spk], device=self.device) if spk is not None else None
                dur = self.generator.predict_durations(torch.from_numpy(dedup).unsqueeze(0).to(self.device), spk_t)
            units = np.repeat(dedup, dur.squeeze(0).cpu().numpy())
            if f0_hz is not None:
                # the melody of the original, stretched to the predicted length
                f0_hz = np.interp(np.linspace(0, len(f0_hz) - 1, len(units)), np.arange(len(f0_hz)), f0_hz)
        levels = None
        if self.uses_f0 and f0_hz is not None and self.quantizer is not None:
            f0_hz = np.resize(f0_hz, len(units)) if len(f0_hz) != len(units) else f0_hz
            levels = self.quantizer.quantise(f0_hz, item.speaker)
        return units, spk, levels

    @torch.no_grad()
    def generate(self, items: list[SynthItem]) -> list[np.ndarray]:
        """Waveforms for `items` in one batch (padding repeats each sequence's last unit)."""
        prepared = [self._prepare(item) for item in items]
        n = max(len(u) for u, _, _ in prepared)
        units = np.stack([np.pad(u, (0, n - len(u)), mode="edge") for u, _, _ in prepared])
        x = torch.from_numpy(units).to(self.device)
        spk = torch.tensor([s for _, s, _ in prepared], device=self.device) if self.speakers else None
        f0 = None
        if self.uses_f0:
            f0 = torch.from_numpy(np.stack([np.pad(f, (0, n - len(f)), mode="edge") for _, _, f in prepared]))
            f0 = f0.to(self.device)
        with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.bf16):
            wave = self.generator(x, spk, f0).float().squeeze(1).cpu().numpy()
        return [wave[i, : len(u) * HOP].copy() for i, (u, _, _) in enumerate(prepared)]

    def synthesize(self, units: np.ndarray, speaker: str | None = None, f0_hz: np.ndarray | None = None,
                   deduplicate: bool = False) -> np.ndarray:
        """One utterance, raw generator output (no loudness or silence policy)."""
        return self.generate([SynthItem("", units, speaker, f0_hz, deduplicate)])[0]


@dataclass
class SynthesisReport:
    out_dir: Path
    written: int = 0
    skipped: int = 0
    problems: list[dict] = field(default_factory=list)
    audio_seconds: float = 0.0
    generate_seconds: float = 0.0

    @property
    def x_real_time(self) -> float:
        return self.audio_seconds / self.generate_seconds if self.generate_seconds > 0 else float("nan")

    def summary(self) -> dict:
        return {"out": str(self.out_dir), "written": self.written, "skipped_existing": self.skipped,
                "problems": self.problems, "audio_seconds": round(self.audio_seconds, 2),
                "x_real_time": round(self.x_real_time, 1) if self.generate_seconds else None}


def default_ids(vocoder: Vocoder, units: UnitsStore, which: str) -> list[str]:
    """`held-out`: utterances the vocoder never trained on (dev/test split or its validation draw);
    `all`: every utterance of the units."""
    if which == "all":
        return units.ids
    if which == "held-out":
        held_ids = vocoder.meta.get("held_out_ids") or vocoder.meta.get("validation_ids", [])
        held = [u for u in held_ids if u in units]
        return held or units.ids
    raise BadInputError(f"unknown id selection {which!r}", "use `held-out`, `all`, or pass a list of ids")


def synthesize_units(
    vocoder: Vocoder | str | os.PathLike,
    units: UnitsStore | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    ids: list[str] | str = "held-out",
    corpus: Corpus | str | None = None,
    workspace: Workspace | None = None,
    deduplicate: bool = False,
    speaker: str | None = None,
    policy: OutputPolicy | None = None,
    batch_size: int = 16,
    system: str | None = None,
    device: str | None = None,
    precision: str = "auto",
    progress: bool = True,
) -> SynthesisReport:
    """Synthesize `ids` of a units store into `out_dir` (one WAV per utterance + stimuli.csv/json).

    Resumable: utterances already written with the same vocoder step and policy are skipped.
    """
    vocoder = vocoder if isinstance(vocoder, Vocoder) else Vocoder.load(vocoder, device, precision)
    units = units if isinstance(units, UnitsStore) else UnitsStore.open(units)
    vocoder.check_units_store(units)
    policy = policy or OutputPolicy()
    out_dir = Path(out_dir)
    id_list = default_ids(vocoder, units, ids) if isinstance(ids, str) else list(ids)
    if not id_list:
        raise BadInputError("no utterances to synthesize", "check the ids and the units folder")

    corpus_obj = None
    need_corpus = vocoder.uses_f0 or (vocoder.speakers and speaker is None)
    if need_corpus or corpus is not None:
        corpus_obj = resolve_corpus(units, corpus, workspace)
    speakers = corpus_obj.speakers() if corpus_obj is not None else {}

    key = {"vocoder_step": vocoder.step, "vocoder": str(vocoder.path), "policy": policy.to_dict(), "bf16": vocoder.bf16,
           "deduplicate": deduplicate, "speaker": speaker}
    progress_file = out_dir / ".progress.jsonl"
    done: dict[str, dict] = {}
    if progress_file.exists():
        for line in progress_file.read_text().splitlines():
            row = json.loads(line)
            if row.pop("key") == key and (out_dir / row["file"]).exists():
                done[row["id"]] = row
    for uid, row in list(done.items()):
        try:
            verify_file(out_dir / row["file"], row.get("checksum"))
        except ObtEvalError as exc:  # damaged since it was written: synthesize it again
            logger.warning("%s; synthesizing %s again", str(exc).splitlines()[0], uid)
            del done[uid]
    report = SynthesisReport(out_dir)
    todo = [u for u in id_list if u not in done]
    report.skipped = len(id_list) - len(todo)
    lengths = {u: len(units.get(u)) if u in units else 0 for u in todo}
    todo.sort(key=lambda u: lengths[u])  # similar lengths per batch: little padding
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc=f"synthesize {out_dir.name}", unit="utt", disable=not progress)
    with progress_file.open("a") as log:
        for start in range(0, len(todo), batch_size):
            items = []
            for uid in todo[start:start + batch_size]:
                try:
                    seq = units.get(uid)
                    spk = speaker or speakers.get(uid)
                    f0 = None
                    if vocoder.uses_f0:
                        f0 = unit_f0(corpus_obj.wave(uid), len(seq))
                    item = SynthItem(uid, seq, spk, f0, deduplicate)
                    vocoder._prepare(item)  # validate now, so one bad item does not sink its batch
                    items.append(item)
                except ObtEvalError as exc:
                    report.problems.append({"id": uid, "problem": str(exc)})
            if not items:
                bar.update(len(todo[start:start + batch_size]))
                continue
            t0 = time.perf_counter()
            waves = vocoder.generate(items)
            if vocoder.device.type == "cuda":
                torch.cuda.synchronize()
            report.generate_seconds += time.perf_counter() - t0
            for item, wave in zip(items, waves, strict=True):
                try:
                    out, info = apply_policy(wave, policy)
                except UnusableClip as exc:
                    report.problems.append({"id": item.uid, "problem": str(exc)})
                    continue
                name = f"{safe_name(item.uid)}.wav"
                write_wav(out_dir / name, out)
                row = {"id": item.uid, "file": name, "speaker": item.speaker, "num_units": int(len(item.units)),
                       "source_samples": int(len(item.units) * HOP), "generated_samples": int(len(wave)),
                       "num_samples": int(len(out)), **info, "checksum": file_checksum(out_dir / name)}
                log.write(json.dumps({**row, "key": key}) + "\n")
                log.flush()
                done[item.uid] = row
                report.written += 1
                report.audio_seconds += len(wave) / SAMPLE_RATE
            bar.update(len(todo[start:start + batch_size]))
    bar.close()
    rows = [done[u] for u in id_list if u in done]
    # a row resumed from an older run has no checksum yet: the file was just checked to exist
    checksums = {row["file"]: row.get("checksum") or file_checksum(out_dir / row["file"]) for row in rows}
    table = pd.DataFrame([{k: v for k, v in row.items() if k != "checksum"} for row in rows])
    with_path = out_dir / STIMULI_TABLE
    write_text(with_path, table.to_csv(index=False))
    write_json(out_dir / STIMULI_SIDECAR, {
        "system": system or out_dir.name, "vocoder": str(vocoder.path), "vocoder_step": vocoder.step,
        "units": str(Path(units.path).resolve()), "codebook_hash": vocoder.meta.get("codebook_hash"), "k": units.k,
        "encoder": units.meta.get("encoder"), "layer": units.meta.get("layer"),
        "corpus": vocoder.meta.get("corpus"), "corpus_path": vocoder.meta.get("corpus_path"),
        "deduplicate": deduplicate, "policy": policy.to_dict(), "bf16": vocoder.bf16, "sample_rate": SAMPLE_RATE,
        "count": len(rows),
        "problems": report.problems, "provenance": provenance(), "checksums": checksums,
    })
    if not rows and report.problems:
        first = report.problems[0]
        raise BadInputError(
            f"no utterance could be synthesized ({len(report.problems)} problem(s)); first: {first['id']}: "
            f"{first['problem']}",
            f"every problem is listed in {out_dir / STIMULI_SIDECAR}; silent output usually means an undertrained "
            "vocoder (train more steps) or units it was not trained on; --max-gain-db raises the gain limit")
    return report
