"""Unit-vocoder speed: training steps/s at the reference recipe's batch (16 x 8960 samples) and
synthesis x-real-time, on CPU or GPU. Prints one JSON object.

    python benchmarks/vocoder_speed.py                       # CPU, a few steps
    python benchmarks/vocoder_speed.py --device cuda --train-steps 30 --synth-seconds 60 --synth-batch 16

Synthesis is timed in fp32 and bf16 autocast (fast on CPUs with AVX512-BF16/AMX and on GPUs).
On GPU it measures the recipe's fp32 step (the speech-resynthesis baseline) and the bf16 autocast
step that `train-vocoder` uses, on the same machine. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from obt_eval.vocoder.config import preset
from obt_eval.vocoder.generator import UnitGenerator
from obt_eval.vocoder.synthesis import SynthItem, Vocoder
from obt_eval.vocoder.toy import make_toy_corpus
from obt_eval.vocoder.train import train_vocoder


def train_rate(root: Path, units, device: str, steps: int, warmup: int, amp: bool, batch: int, segment: int) -> dict:
    cfg = preset("reference")
    cfg.train = replace(cfg.train, batch_size=batch, segment_size=segment, amp=amp, validate_every=10**9,
                        checkpoint_every=10**9, log_every=10**9)
    stamps: list[float] = []

    def on_step(step, losses):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    # the last step also validates and checkpoints: time only the steps before it
    train_vocoder(units, root / f"voc-{amp}", cfg, steps=steps + 1, device=device, progress=False,
                  overwrite=True, on_step=on_step)
    timed = np.diff(stamps[warmup:steps])
    return {"steps_per_s": round(1.0 / float(np.mean(timed)), 3), "timed_steps": int(timed.size),
            "ms_per_step": round(1000 * float(np.mean(timed)), 1), "amp_bf16": amp and device.startswith("cuda")}


def synth_rate(device: str, seconds: float, batch: int, repeats: int, precision: str) -> dict:
    cfg = preset("reference")
    gen = UnitGenerator(replace(cfg.generator, num_units=100))
    gen.remove_weight_norm()
    vocoder = Vocoder(gen.eval().to(device), cfg, {"speakers": []}, torch.device(device), 0, precision=precision)
    frames = int(seconds * 50)
    rng = np.random.default_rng(0)
    items = [SynthItem(str(i), rng.integers(0, 100, frames)) for i in range(batch)]
    vocoder.generate(items[:1])  # warm-up (cuDNN autotune, allocator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        vocoder.generate(items)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    audio = batch * frames * 320 / 16000
    return {"x_real_time": round(audio / min(times), 1), "audio_seconds_per_call": audio, "batch": batch,
            "bf16": vocoder.bf16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--segment-size", type=int, default=8960)
    parser.add_argument("--synth-seconds", type=float, default=10.0)
    parser.add_argument("--synth-batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
              "batch_size": args.batch_size, "segment_size": args.segment_size}
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as tmp:
            units, _ = make_toy_corpus(tmp, num_utterances=20, k=100, seconds=2.0)
            result["train_fp32"] = train_rate(Path(tmp), units, args.device, args.train_steps, args.warmup, False,
                                              args.batch_size, args.segment_size)
            if args.device.startswith("cuda"):
                result["train_amp"] = train_rate(Path(tmp), units, args.device, args.train_steps, args.warmup,
                                                 True, args.batch_size, args.segment_size)
                result["amp_speedup"] = round(result["train_amp"]["steps_per_s"]
                                              / result["train_fp32"]["steps_per_s"], 2)
    result["synthesis_fp32"] = synth_rate(args.device, args.synth_seconds, args.synth_batch, args.repeats, "fp32")
    result["synthesis_bf16"] = synth_rate(args.device, args.synth_seconds, args.synth_batch, args.repeats, "bf16")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
