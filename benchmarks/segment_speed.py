"""Segmentation speed: the real-time factor of `obt_eval.corpus.segment` on a long recording, on CPU.

The recording is espeak demo utterances (made offline) joined by 0.4-2.5 s pauses with room tone,
written block by block to a 16 kHz PCM-16 WAV of the chosen length. Measures Silero VAD (batched
lanes, the default) and one sequential pass over the first minute for comparison, the energy VAD,
the whole plan, and `ingest --segment` (including writing the segment WAVs), each as audio seconds per
wall-clock second and per CPU second of this process (the steadier figure on a shared machine), and
the peak memory growth while Silero runs. Prints one JSON object.

    python benchmarks/segment_speed.py                 # a 10-minute chapter
    python benchmarks/segment_speed.py --minutes 60    # the longest chapters the team has
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obt_eval.corpus.ingest import IngestOptions, ingest  # noqa: E402
from obt_eval.corpus.segment import (  # noqa: E402
    SegmentOptions,
    analyse,
    load_silero,
    segment_recording,
)
from obt_eval.demo_corpus import make_demo_corpus  # noqa: E402
from obt_eval.frames import SAMPLE_RATE  # noqa: E402
from obt_eval.workspace import Workspace  # noqa: E402


def write_chapter(demo: Path, out: Path, minutes: float, seed: int = 0) -> float:
    """Stream demo utterances and pauses into `out` until it lasts `minutes`; returns its seconds."""
    rng = np.random.default_rng(seed)
    waves = [sf.read(p, dtype="float32")[0] for p in sorted((demo / "wavs").glob("*.wav"))]
    target = int(minutes * 60 * SAMPLE_RATE)
    written = 0
    with sf.SoundFile(out, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        while written < target:
            x = waves[int(rng.integers(len(waves)))]
            pause = np.zeros(int(rng.uniform(0.4, 2.5) * SAMPLE_RATE), np.float32)
            block = np.concatenate([x, pause])[: target - written]
            block = block + rng.normal(0, 1e-3, block.size).astype(np.float32)  # room tone at -60 dBFS
            f.write(np.clip(block, -1, 1))
            written += block.size
    return written / SAMPLE_RATE


def timed(fn):
    """(result, wall seconds, CPU seconds of this process): on a shared machine the CPU time is the steadier."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="obt-seg-bench-") as tmp:
        tmp = Path(tmp)
        make_demo_corpus(tmp / "demo", speakers_per_language=2, sentences_per_language=10, noise_dbfs=None)
        (tmp / "chapters").mkdir()
        chapter = tmp / "chapters" / "chapter.wav"
        seconds = write_chapter(tmp / "demo", chapter, args.minutes)
        first_minute = tmp / "minute.wav"
        sf.write(first_minute, sf.read(chapter, frames=60 * SAMPLE_RATE, dtype="float32")[0], SAMPLE_RATE)

        import torch

        model, load_s, _ = timed(load_silero)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        silero, silero_s, silero_cpu = timed(lambda: analyse(chapter, "silero", model=model))
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        _, one_lane_s, one_lane_cpu = timed(lambda: analyse(first_minute, "silero", model=model, lanes=1))
        _, energy_s, energy_cpu = timed(lambda: analyse(chapter, "energy"))
        plan_silero, plan_silero_s, plan_silero_cpu = timed(
            lambda: segment_recording(chapter, SegmentOptions(), model=model))
        plan_energy, plan_energy_s, plan_energy_cpu = timed(
            lambda: segment_recording(chapter, SegmentOptions(vad="energy")))
        result = {
            "audio_seconds": round(seconds, 1),
            "silero_model_load_s": round(load_s, 3),
            "silero_vad_x_real_time": round(seconds / silero_s, 1),
            "silero_vad_x_real_time_per_cpu_second": round(seconds / silero_cpu, 1),
            "silero_vad_one_sequential_pass_x_real_time": round(60.0 / one_lane_s, 1),
            "silero_vad_one_sequential_pass_x_real_time_per_cpu_second": round(60.0 / one_lane_cpu, 1),
            "energy_vad_x_real_time": round(seconds / energy_s, 1),
            "energy_vad_x_real_time_per_cpu_second": round(seconds / energy_cpu, 1),
            "segment_recording_silero_x_real_time": round(seconds / plan_silero_s, 1),
            "segment_recording_silero_x_real_time_per_cpu_second": round(seconds / plan_silero_cpu, 1),
            "segment_recording_energy_x_real_time": round(seconds / plan_energy_s, 1),
            "segment_recording_energy_x_real_time_per_cpu_second": round(seconds / plan_energy_cpu, 1),
            "segments_silero": len(plan_silero.segments),
            "segments_energy": len(plan_energy.segments),
            "median_segment_s": round(float(np.median([s.duration for s in plan_silero.segments])), 2),
            "peak_rss_growth_during_silero_mb": round((rss_after - rss_before) / 1024, 1),
            "frame_arrays_mb": round((silero.power.nbytes + silero.clipped.nbytes + silero.zeros.nbytes
                                      + silero.speech_prob.nbytes) / 2**20, 2),
        }
        if not args.skip_ingest:
            ws = Workspace.at(tmp / "ws")
            _, ingest_s, ingest_cpu = timed(lambda: ingest(tmp / "chapters", "bench", ws, progress=False,
                                                           options=IngestOptions(segmenting=SegmentOptions())))
            result["ingest_segment_silero_x_real_time"] = round(seconds / ingest_s, 1)
            result["ingest_segment_silero_x_real_time_per_cpu_second"] = round(seconds / ingest_cpu, 1)
        result.update({
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2), "machine": platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
        })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
