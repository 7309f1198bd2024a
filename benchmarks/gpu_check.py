"""The whole team's GPU check in one call: every speed figure the issues ask for, one JSON file.

On a machine with a CUDA GPU, from the repository root:

    bash benchmarks/gpu_check.sh                      # installs what is missing, then runs this
    python benchmarks/gpu_check.py --out gpu_check.json [--budget-seconds 480]

It runs, each as its own process with a share of the budget (a part that overruns is recorded as
timed out and the rest goes on):

1. extraction speed, the field's recipe vs `extract`: 300M shape at layer 14 and 1B shape at layer 24
   (`benchmarks/extract_speed.py`, random weights: speed does not depend on them);
2. k-means on 1M x 1024, k = 100: obt-eval (torch on the GPU) vs the fairseq recipe (sklearn
   MiniBatchKMeans on the CPU, fitted on the first `--recipe-frames` frames: on 1M it takes far longer
   than the budget) (`benchmarks/kmeans_speed.py`);
3. ABX on the GPU, 29,600 items x 768-d, within and across speaker (`benchmarks/abx_speed.py`);
4. vocoder training steps/s at the recipe's batch and synthesis x real time (`benchmarks/vocoder_speed.py`);
5. a 3-encoder experiment on the demo corpus — `--encoders xlsr53,mms-300m,mms-1b` by their registered
   names, served from a local Hugging Face cache of full-size random-weight checkpoints
   (`HF_HUB_OFFLINE=1`), so the exact code path of the real checkpoints runs, layers 14/14/24 included.

Prints the JSON (and writes it to --out). Nothing here needs the network once obt-eval is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

# (name, command, share of the budget): shares sum to ~1 with the experiment taking the largest
PARTS = [
    ("extract_300m_L14", [str(BENCH / "extract_speed.py"), "--arch", "300m", "--layer", "14", "--minutes", "20",
                          "--recipe-minutes", "2", "--device", "cuda"], 0.12),
    ("extract_1b_L24", [str(BENCH / "extract_speed.py"), "--arch", "1b", "--layer", "24", "--minutes", "20",
                        "--recipe-minutes", "2", "--device", "cuda"], 0.14),
    ("kmeans_1M_x_1024", [str(BENCH / "kmeans_speed.py"), "--frames", "1000000", "--dim", "1024", "--k", "100",
                          "--device", "cuda", "--skip", "faiss", "--recipe-frames", "100000"], 0.18),
    ("abx", [str(BENCH / "abx_speed.py"), "--items", "29600", "--dim", "768", "--device", "cuda"], 0.08),
    ("vocoder", [str(BENCH / "vocoder_speed.py"), "--device", "cuda", "--train-steps", "30", "--synth-seconds", "60",
                 "--synth-batch", "16"], 0.12),
]
EXPERIMENT_SHARE = 0.36

# The registered encoders' shapes (unit-pipeline.md §3): XLSR-53 and MMS-300M are wav2vec2 large with
# stable layer norm; MMS-1B is 48 x 1280. Random weights, real configs, real cache layout.
HUB_MODELS = {
    "facebook/wav2vec2-large-xlsr-53": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                            intermediate_size=4096),
    "facebook/mms-300m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                              intermediate_size=4096),
    "facebook/mms-1b": dict(hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120),
}


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def run_part(command: list[str], timeout: float, env: dict | None = None) -> dict:
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=max(10.0, timeout), env=env,
                              cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-2000:]
        return {"ok": False, "timed_out": True, "limit_seconds": round(timeout),
                "stderr_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail}
    wall = round(time.perf_counter() - started, 1)
    result = last_json(proc.stdout)
    if proc.returncode != 0 or result is None:
        return {"ok": False, "returncode": proc.returncode, "wall_seconds": wall,
                "stderr_tail": proc.stderr[-2000:], "stdout_tail": proc.stdout[-1000:]}
    return {"ok": True, "wall_seconds": wall, "result": result}


# --smoke: the same parts at toy sizes on the CPU, to check the plumbing on a machine without a GPU
SMOKE_PARTS = {
    "extract_300m_L14": ["--arch", "small", "--layer", "6", "--minutes", "0.3", "--recipe-minutes", "0.2",
                         "--device", "cpu"],
    "extract_1b_L24": ["--arch", "small", "--layer", "8", "--minutes", "0.3", "--recipe-minutes", "0.2",
                       "--device", "cpu"],
    "kmeans_1M_x_1024": ["--frames", "20000", "--dim", "64", "--k", "20", "--heldout", "2000", "--device", "cpu",
                         "--skip", "faiss", "--recipe-frames", "5000"],
    "abx": ["--items", "1500", "--dim", "32", "--device", "cpu"],
    # a full-size training step takes ~20 CPU-seconds: the smoke run checks synthesis only
    "vocoder": ["--device", "cpu", "--skip-train", "--synth-seconds", "0.5", "--synth-batch", "1", "--repeats", "1"],
}
SMOKE_SHAPE = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7)


def fake_hub_cache(cache: Path, smoke: bool = False) -> None:
    """Full-size random-weight checkpoints under the registered Hub ids, in huggingface_hub's cache layout
    (`smoke`: the registered depths with toy widths, so the registered layers 14 and 24 still exist)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    for repo, shape in HUB_MODELS.items():
        if smoke:
            shape = {**shape, **SMOKE_SHAPE}
        snapshot = cache / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        if (snapshot / "config.json").exists():
            continue
        config = Wav2Vec2Config(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True, **shape)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init is slow on a CPU
            model = Wav2Vec2Model(config)
        model.to("cpu").save_pretrained(snapshot)
        Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(snapshot)
        refs = snapshot.parent.parent / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / "main").write_text("0" * 40)


def run_experiment(timeout: float, work: Path, smoke: bool = False) -> dict:
    started = time.perf_counter()
    cache = work / "hf"
    fake_hub_cache(cache, smoke)
    env = {**os.environ, "HF_HOME": str(cache), "HF_HUB_OFFLINE": "1", "OBT_EVAL_HOME": str(work / "ws"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cli = [sys.executable, "-m", "obt_eval_cli.main"]
    setup = [cli + ["demo-corpus", str(work / "demo")] + (["--speakers", "1", "--sentences", "8"] if smoke else []),
             cli + ["ingest", str(work / "demo" / "wavs"), "--name", "demo", "--metadata",
                    str(work / "demo" / "metadata.csv"), "--alignments", str(work / "demo" / "textgrids")]]
    for command in setup:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            return {"ok": False, "failed": " ".join(command[3:5]), "stderr_tail": proc.stderr[-2000:]}
    prepared = round(time.perf_counter() - started, 1)
    sizes = ["--k", "20", "--vocoder-preset", "tiny", "--vocoder-steps", "5", "--study-utterances", "4"] if smoke \
        else ["--k", "100", "--vocoder-preset", "small", "--vocoder-steps", "500", "--study-utterances", "12"]
    part = run_part(cli + ["experiment", "run", "--name", "gpu-check", "--corpus", "demo", "--encoders",
                           "xlsr53,mms-300m,mms-1b", *sizes, "--json"], timeout - prepared, env)
    part["setup_seconds"] = prepared
    return part


def environment() -> dict:
    info: dict = {"host": platform.node(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except ImportError:
        info["torch"] = None
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                        cwd=ROOT).stdout.strip() or None
    except OSError:
        info["commit"] = None
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--budget-seconds", type=float, default=480.0, help="all parts together (8 minutes)")
    parser.add_argument("--only", default="", help="comma list of parts to run (default: all; 'experiment' too)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: checks the script only")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    report: dict = {"benchmark": "gpu_check", "smoke": args.smoke, "environment": environment(), "parts": {}}
    if "gpu" not in report["environment"] and not args.smoke:
        report["error"] = "no CUDA GPU visible to torch: run this on a GPU machine with a CUDA build of torch"
        print(json.dumps(report))
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        sys.exit(2)
    started = time.perf_counter()
    for name, command, share in PARTS:
        if only and name not in only:
            continue
        if args.smoke:
            command = [command[0], *SMOKE_PARTS[name]]
        report["parts"][name] = run_part([sys.executable, *command], args.budget_seconds * share)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")  # what finished survives a kill
    if not only or "experiment" in only:
        left = args.budget_seconds - (time.perf_counter() - started)
        with tempfile.TemporaryDirectory(prefix="obt-eval-gpu-check-") as work:
            report["parts"]["experiment_3_encoders"] = run_experiment(
                max(left, args.budget_seconds * EXPERIMENT_SHARE), Path(work), args.smoke)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
