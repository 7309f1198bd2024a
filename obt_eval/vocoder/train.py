"""Train a unit vocoder: HiFi-GAN losses on random segments, exact resume, validation, DDP.

One function, `train_vocoder`, used by the CLI, the jobs and the tests. Under ``torchrun`` (WORLD_SIZE > 1)
each process takes ``batch_size / world_size`` segments of the global batch and rank 0 writes
everything; on one device the same code runs without a process group.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from obt_eval.atomic import read_json, write_json
from obt_eval.audio import write_wav
from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.frames import FRAME_RATE, HOP
from obt_eval.provenance import provenance
from obt_eval.units.store import UnitsStore
from obt_eval.vocoder import checkpoint as ckpt
from obt_eval.vocoder.config import VocoderConfig
from obt_eval.vocoder.curves import CsvLog, plot_curves
from obt_eval.vocoder.data import (
    SegmentSampler,
    Utterance,
    load_utterances,
    resolve_corpus,
    resolve_units,
    split_ids,
)
from obt_eval.vocoder.f0 import F0Quantizer, unit_f0
from obt_eval.vocoder.gan import GanTrainer
from obt_eval.vocoder.generator import UnitGenerator
from obt_eval.vocoder.losses import (
    mel_spectrogram,
)
from obt_eval.vocoder.runtime import run_lock, setup_distributed
from obt_eval.workspace import Workspace, safe_name

TRAIN_COLUMNS = ["step", "loss_g", "loss_d", "mel_l1", "adv", "fm", "duration", "lr", "steps_per_s"]
VAL_COLUMNS = ["step", "val_mel_l1", "wall_s"]
# settings that may change between a run and its resumption: they do not change what is learnt
BOOKKEEPING = ("steps", "checkpoint_every", "validate_every", "log_every", "keep_checkpoints", "num_samples")
F0_LEVELS = 20  # default number of F0 levels when F0 conditioning is switched on (see f0.py)


class TrainingDivergedError(ObtEvalError):
    """A loss or gradient became NaN or infinite: the run stops before that update is ever saved."""


def check_finite(step: int, losses: dict[str, float], checkpoint_step: int | None) -> None:
    """Stop the run at the first non-finite loss or gradient norm, naming the step and the value."""
    bad = [name for name, value in losses.items() if not math.isfinite(value)]
    if bad:
        kept = (f"the last good checkpoint (step {checkpoint_step}) is kept" if checkpoint_step is not None
                else "no checkpoint was written yet")
        raise TrainingDivergedError(
            f"training diverged at step {step}: {', '.join(f'{n} = {losses[n]}' for n in bad)}; "
            f"the run stopped without saving ({kept})",
            "resuming repeats the same steps exactly, so look for the cause: a broken training file (NaN, "
            "clipped or empty audio) or settings that are too aggressive (start over with another --preset or "
            "--batch-size and --overwrite)",
        )


@dataclass
class TrainResult:
    vocoder_dir: Path
    step: int
    resumed_from: int
    steps_per_second: float
    val_mel_l1: float | None
    problems: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {"vocoder": str(self.vocoder_dir), "step": self.step, "resumed_from": self.resumed_from,
                "steps_per_second": round(self.steps_per_second, 3), "val_mel_l1": self.val_mel_l1,
                "generator": str(self.vocoder_dir / "generator.pt"), "problems": self.problems}


def _prepare_config(
    base: VocoderConfig, units: UnitsStore, speakers: list[str], f0: bool, durations: bool, steps: int | None
) -> VocoderConfig:
    cfg = VocoderConfig.from_dict(base.to_dict())
    cfg.generator.num_units = units.k
    cfg.generator.num_speakers = len(speakers)
    cfg.generator.f0_bins = (cfg.generator.f0_bins or F0_LEVELS) if f0 else 0
    cfg.generator.duration_predictor = durations
    if steps is not None:
        cfg.train.steps = steps
    return cfg


def _check_existing(out_dir: Path, cfg: VocoderConfig, meta: dict) -> dict | None:
    """Settings of a previous run in `out_dir`; a different codebook or model shape is refused."""
    path = out_dir / "config.json"
    if not path.exists():
        return None
    old = read_json(path)
    if old["meta"]["codebook_hash"] != meta["codebook_hash"]:
        raise BadInputError(
            f"{out_dir} holds a vocoder trained on other units (codebook {old['meta']['codebook_hash']}, "
            f"these units: {meta['codebook_hash']})",
            "choose another --name/--out for these units, or pass --overwrite to start over",
        )
    old_cfg, new_cfg = VocoderConfig.from_dict(old["config"]).to_dict(), cfg.to_dict()
    for key in BOOKKEEPING:
        old_cfg["train"].pop(key)
        new_cfg["train"].pop(key)
    if old_cfg != new_cfg:
        raise BadInputError(
            f"{out_dir} holds a vocoder with different settings (speakers/F0/durations/preset)",
            "resume with the settings it was started with, or pass --overwrite to start over",
        )
    return old


def _compute_f0(utts: list[Utterance], cache: Path, progress: bool) -> dict[str, np.ndarray]:
    cached: dict[str, np.ndarray] = {}
    if cache.exists():
        try:
            with np.load(cache) as z:
                cached = {key: z[key] for key in z.files}
        except Exception:  # a damaged cache (BadZipFile, truncation…) is recomputed, not fatal
            cached = {}
    out = {}
    for utt in tqdm(utts, desc="F0", unit="utt", disable=not progress, leave=False):
        values = cached.get(utt.uid)
        if values is None or len(values) != len(utt.units):
            values = unit_f0(utt.audio, len(utt.units))
        out[utt.uid] = values
    if out.keys() != cached.keys():
        from obt_eval.atomic import atomic_path

        with atomic_path(cache, suffix=".npz") as tmp:
            np.savez(tmp, **out)
    return out


def train_vocoder(
    units: UnitsStore | str | os.PathLike,
    out_dir: str | os.PathLike,
    config: VocoderConfig | None = None,
    *,
    corpus: Corpus | str | None = None,
    workspace: Workspace | None = None,
    speakers: bool = False,
    f0: bool = False,
    durations: bool = False,
    steps: int | None = None,
    ids: list[str] | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train (or resume) a unit vocoder in `out_dir` until `steps` (default: the config's) are done.

    `ids` restricts training to those utterances (train-vocoders passes the ids all encoders share).
    `on_step(step, losses)` is called after every step (progress reporting for jobs).
    """
    units = resolve_units(units)
    corpus = resolve_corpus(units, corpus, workspace)
    out_dir = Path(out_dir)
    info, dev = setup_distributed(device)
    base = config or VocoderConfig()

    speaker_of = corpus.speakers()
    use_ids = [u for u in (ids if ids is not None else units.ids) if u in speaker_of and u in units]
    missing = len(ids if ids is not None else units.ids) - len(use_ids)
    speaker_names = sorted({speaker_of[u] for u in use_ids}) if speakers else []
    cfg = _prepare_config(base, units, speaker_names, f0, durations, steps)
    meta = {
        "units": str(Path(units.path).resolve()), "k": units.k, "codebook_hash": ckpt.codebook_hash(units.codebook),
        "corpus": corpus.name, "corpus_path": str(Path(corpus.root).resolve()),
        "encoder": units.meta.get("encoder"), "layer": units.meta.get("layer"), "speakers": speaker_names,
        "durations": durations,
    }
    if overwrite and info.main and out_dir.exists():
        for name in ("checkpoints", "samples"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in ("config.json", "latest.json", "generator.pt", "train_log.csv", "validation.csv",
                     "curves.png", "f0.npz", "problems.json"):
            (out_dir / name).unlink(missing_ok=True)
    old = _check_existing(out_dir, cfg, meta)
    with run_lock(out_dir, info.main), _small_model_threads(cfg, dev):
        return _train(units, corpus, out_dir, cfg, meta, old, info, dev, speaker_of, use_ids, missing,
                      speaker_names, f0, durations, progress, on_step)


TINY_CHANNELS = 64  # the `tiny` preset's generator width


@contextlib.contextmanager
def _small_model_threads(cfg: VocoderConfig, dev: torch.device):
    """Train a tiny generator on one CPU thread: its convolutions are too small to gain from intra-op
    threads, and on a busy CPU the threads' spin-waiting cost 8x (shared 2-core dev machine: 0.07 vs
    0.58 steps/s with 2 threads vs 1)."""
    if dev.type != "cpu" or cfg.generator.upsample_initial_channel > TINY_CHANNELS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(units, corpus, out_dir, cfg, meta, old, info, dev, speaker_of, use_ids, missing, speaker_names,
           f0, durations, progress, on_step) -> TrainResult:
    tc = cfg.train
    if tc.batch_size % info.world:
        raise BadInputError(f"batch size {tc.batch_size} does not split over {info.world} processes",
                            "use a batch size divisible by the number of GPUs")

    train_ids, val_ids = split_ids(corpus, use_ids, tc.num_validation, tc.seed)
    if old is not None:
        val_ids = old["meta"]["validation_ids"]
        train_ids = [u for u in train_ids if u not in set(val_ids)] or train_ids
    speaker_index = {s: i for i, s in enumerate(speaker_names)}
    train_utts, problems = load_utterances(units, corpus, train_ids, tc.peak_normalise, speaker_index,
                                           progress and info.main)
    val_utts, val_problems = load_utterances(units, corpus, val_ids, tc.peak_normalise, speaker_index, False)
    problems += val_problems
    if missing:
        problems.append({"id": "*", "problem": f"{missing} utterance(s) of the units are not in corpus {corpus.name}"})

    quantizer = None
    if f0:
        if old is not None and old["meta"].get("f0"):
            quantizer = F0Quantizer.from_dict(old["meta"]["f0"])
        f0_hz = _compute_f0(train_utts + val_utts, out_dir / "f0.npz", progress and info.main)
        if quantizer is None:
            quantizer = F0Quantizer.fit({u.uid: f0_hz[u.uid] for u in train_utts},
                                        {u: speaker_of[u] for u in use_ids}, cfg.generator.f0_bins)
        for utt in train_utts + val_utts:
            utt.f0 = quantizer.quantise(f0_hz[utt.uid], speaker_of[utt.uid])
    train_set = {u.uid for u in train_utts}
    meta.update({"f0": quantizer.to_dict() if quantizer else None, "validation_ids": [u.uid for u in val_utts],
                 "held_out_ids": sorted(set(use_ids) - train_set), "num_train_utterances": len(train_utts)})
    if info.main:
        write_json(out_dir / "config.json", {"config": cfg.to_dict(), "meta": meta, "provenance": provenance()})
        if problems:
            write_json(out_dir / "problems.json", problems)

    gan = GanTrainer(cfg, dev, info, steps_per_epoch=len(train_utts) // tc.batch_size)
    step = 0
    state = ckpt.load_resume_state(out_dir, map_location=dev)  # a damaged newest one: the previous kept one
    if state is not None:
        gan.load_state_dict(state)
        ckpt.set_rng_state(state["rng"])
        step = int(state["step"])
    resumed_from = step
    saved_step = state["step"] if state is not None else None
    del state

    train_log = CsvLog(out_dir / "train_log.csv", TRAIN_COLUMNS)
    val_log = CsvLog(out_dir / "validation.csv", VAL_COLUMNS)
    if info.main:
        train_log.truncate(step)  # rows logged after the checkpoint we resume from would repeat
        val_log.truncate(step)

    def save() -> None:
        nonlocal saved_step
        saved_step = step
        if info.main:
            ckpt.write_checkpoint(out_dir, step, {"config": cfg.to_dict(), "meta": meta, **gan.state_dict(),
                                                  "rng": ckpt.rng_state()}, tc.keep_checkpoints)
            ckpt.export_generator(out_dir, step, cfg.to_dict(), meta, gan.generator.state_dict())

    sampler = SegmentSampler(train_utts, tc.segment_size // HOP, tc.seed)
    local_batch = tc.batch_size // info.world
    bar = tqdm(total=tc.steps, initial=step, unit="step", desc=f"vocoder {out_dir.name}",
               disable=not (progress and info.main), dynamic_ncols=True)
    val_mel = None
    t_start, steps_done = time.perf_counter(), 0
    gan.generator.train()
    try:
        while step < tc.steps:
            batch = {k: v.to(dev, non_blocking=True) for k, v in sampler.batch(step, local_batch, info.rank).items()}
            losses = gan.step(batch)
            check_finite(step + 1, {**losses, **gan.grad_norms}, saved_step)  # before anything is logged or saved
            step += 1
            steps_done += 1
            bar.update(1)
            rate = steps_done / max(time.perf_counter() - t_start, 1e-9)
            if info.main and (step % tc.log_every == 0 or step == tc.steps):
                train_log.append({"step": step, **losses, "lr": gan.lr, "steps_per_s": rate})
                bar.set_postfix(mel=f"{losses['mel_l1']:.3f}", val=f"{val_mel:.3f}" if val_mel else "-")
            if info.main and (step % tc.validate_every == 0 or step == tc.steps):
                val_mel = validate(gan.generator, val_utts, cfg, dev, out_dir, step, gan.use_amp)
                val_log.append({"step": step, "val_mel_l1": val_mel, "wall_s": time.perf_counter() - t_start})
                plot_curves(train_log.read(), val_log.read(), out_dir / "curves.png", title=out_dir.name)
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                save()
            if on_step is not None:
                on_step(step, losses)
    except KeyboardInterrupt:
        save()  # Ctrl-C keeps the work done so far; a later run resumes from exactly here
        raise
    finally:
        bar.close()
    if resumed_from and steps_done == 0 and info.main and not ckpt.generator_intact(out_dir):
        save()  # a finished run whose generator.pt is missing or damaged: write it again from the checkpoint
    if val_mel is None and info.main and val_log.read().shape[0]:
        val_mel = float(val_log.read()["val_mel_l1"].iloc[-1])
    rate = steps_done / max(time.perf_counter() - t_start, 1e-9)
    return TrainResult(out_dir, step, resumed_from, rate, val_mel, problems)


@torch.no_grad()
def validate(
    generator: UnitGenerator, utts: list[Utterance], cfg: VocoderConfig, dev: torch.device, out_dir: Path,
    step: int, use_amp: bool,
) -> float:
    """Mean L1 log-mel distance on held-out utterances; writes a few of them as WAV samples."""
    generator.eval()
    max_units = int(cfg.train.max_validation_seconds * FRAME_RATE)
    losses = []
    for i, utt in enumerate(utts):
        n = min(len(utt.units), max_units)
        units = torch.from_numpy(utt.units[:n]).unsqueeze(0).to(dev)
        spk = torch.tensor([utt.speaker], device=dev) if cfg.generator.num_speakers else None
        f0 = torch.from_numpy(utt.f0[:n]).unsqueeze(0).to(dev) if utt.f0 is not None else None
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
            y_hat = generator(units, spk, f0).float()
        y = torch.from_numpy(utt.audio[: n * HOP]).view(1, 1, -1).to(dev)
        losses.append(F.l1_loss(mel_spectrogram(y_hat, cfg.mel), mel_spectrogram(y, cfg.mel)).item())
        if i < cfg.train.num_samples:
            name = safe_name(utt.uid)
            write_wav(out_dir / "samples" / f"step-{step:08d}" / f"{name}.wav", y_hat.squeeze().cpu().numpy())
            ref = out_dir / "samples" / "reference" / f"{name}.wav"
            if not ref.exists():
                write_wav(ref, utt.audio[: n * HOP])
    generator.train()
    return float(np.mean(losses)) if losses else math.nan
