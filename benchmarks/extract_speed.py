"""Feature-extraction speed: the field's recipe vs `obt-eval extract`, same machine, same architecture.

(a) recipe: ``Wav2Vec2Model`` fp32, batch 1, all layers, ``output_hidden_states=True``, keep
    ``hidden_states[layer]`` (the snippet the project started from), audio read from disk;
(b) ``extract_features`` end to end: audio files on disk -> fp16 feature store on disk.
Random weights (speed does not depend on weight values). Prints one JSON object.

    python benchmarks/extract_speed.py --arch small --minutes 2              # CPU, small config
    python benchmarks/extract_speed.py --arch 300m --layer 14 --minutes 60   # GPU, MMS-300M / XLSR-53 shape
    python benchmarks/extract_speed.py --arch 1b --layer 24 --minutes 60     # GPU, MMS-1B shape
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obt_eval.corpus import Corpus  # noqa: E402
from obt_eval.corpus.ingest import ingest  # noqa: E402
from obt_eval.features.extract import ExtractOptions, extract_features  # noqa: E402
from obt_eval.workspace import Workspace  # noqa: E402

ARCHS = {
    # XLS-R 300M / MMS-300M / XLSR-53 and XLS-R 1B / MMS-1B shapes (unit-pipeline.md §3)
    "300m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "1b": dict(hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120),
    "small": dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=4, intermediate_size=1024,
                  conv_dim=(128,) * 7),
}


def make_model_dir(arch: str, out: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True, **ARCHS[arch])
    Wav2Vec2Model(config).save_pretrained(out)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(out)
    return out


def make_corpus(folder: Path, minutes: float, seed: int = 0) -> None:
    """Utterances of 2-20 s (typical OBT verse segments), harmonic tones plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    remaining, i = minutes * 60, 0
    while remaining > 0:
        seconds = min(remaining, rng.uniform(2, 20))
        t = np.arange(int(seconds * 16_000)) / 16_000
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(90, 250) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"u{i:05d}.wav", wave.astype(np.float32), 16_000, subtype="PCM_16")
        remaining -= seconds
        i += 1


def run_recipe(model_dir: Path, corpus: Corpus, layer: int, device: str, max_seconds: float) -> dict:
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(model_dir).eval().to(device)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(model_dir)
    audio, frames = 0.0, 0
    paths = corpus.manifest["audio_path"].tolist()
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            wave, sr = sf.read(path, dtype="float32")
            inputs = extractor(wave, sampling_rate=sr, return_tensors="pt").to(device)
            out = model(**inputs, output_hidden_states=True)
            features = out.hidden_states[layer][0].cpu().numpy()
            frames += features.shape[0]
            audio += len(wave) / sr
            if audio >= max_seconds:
                break
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"audio_seconds": round(audio, 2), "seconds": round(elapsed, 3), "x_real_time": round(audio / elapsed, 1),
            "frames": frames}


def run_extract(model_dir: Path, corpus: Corpus, layer: int, device: str, ws: Workspace, batch_seconds) -> dict:
    options = ExtractOptions(batch_seconds=batch_seconds)
    _sync(device)
    start = time.perf_counter()
    stores = extract_features(corpus, str(model_dir), [layer], ws, device=device, options=options, progress=False)
    _sync(device)
    wall = time.perf_counter() - start
    meta = stores[layer].meta
    audio = meta["extracted_audio_seconds"]
    return {"audio_seconds": audio, "seconds_with_model_load": round(wall, 3), "seconds": meta["extract_seconds"],
            "x_real_time": round(audio / meta["extract_seconds"], 1), "frames": meta["num_frames"]}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="small")
    parser.add_argument("--layer", type=int, default=None, help="default: 14 for 300m, 24 for 1b, 6 for small")
    parser.add_argument("--minutes", type=float, default=2.0, help="audio to extract with obt-eval")
    parser.add_argument("--recipe-minutes", type=float, default=None, help="audio for the slow recipe (default: same)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-seconds", type=float, default=None)
    args = parser.parse_args()
    layer = args.layer if args.layer is not None else {"300m": 14, "1b": 24, "small": 6}[args.arch]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_model_dir(args.arch, tmp / "model")
        make_corpus(tmp / "audio", args.minutes)
        make_corpus(tmp / "warm", 0.3, seed=1)
        ws = Workspace.at(tmp / "ws")
        ingest(tmp / "audio", "bench", ws, progress=False)
        ingest(tmp / "warm", "warm", ws, progress=False)
        corpus, warm = Corpus.open("bench", ws), Corpus.open("warm", ws)
        run_extract(model_dir, warm, layer, args.device, ws, args.batch_seconds)  # warm-up (kernels, caches)
        ours = run_extract(model_dir, corpus, layer, args.device, ws, args.batch_seconds)
        recipe = run_recipe(model_dir, corpus, layer, args.device, 60 * (args.recipe_minutes or args.minutes))
    result = {
        "benchmark": "extract_speed", "arch": args.arch, "layer": layer, "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "torch_threads": torch.get_num_threads(), "recipe": recipe, "obt_eval_extract": ours,
        "speedup": round(ours["x_real_time"] / recipe["x_real_time"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
