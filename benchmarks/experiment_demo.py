"""Wall time of the demo experiment (the preset `demo`, what the one-click demo runs) from an empty workspace.

Runs `obt-eval demo` as a user would (a local worker with one slot, unless --slots), then prints one
JSON object: total wall time, the time of each stage's job, the machine's core count and its load
average before and after (the dev machine is shared; the load says how much else was running).

    python benchmarks/experiment_demo.py [--workspace DIR] [--slots N] [--vocoder-steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="empty folder to run in (default: a temp folder)")
    parser.add_argument("--slots", type=int, default=None)
    parser.add_argument("--vocoder-steps", type=int, default=None)
    args = parser.parse_args()
    root = Path(args.workspace or tempfile.mkdtemp(prefix="obt-eval-demo-bench-"))
    load_before = os.getloadavg()
    cmd = [sys.executable, "-m", "obt_eval_cli.main", "experiment", "run", "--name", "demo", "--preset", "demo",
           "--workspace", str(root), "--json"]
    if args.slots is not None:
        cmd += ["--slots", str(args.slots)]
    if args.vocoder_steps is not None:
        cmd += ["--vocoder-steps", str(args.vocoder_steps)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    plan = json.loads((root / "experiments" / "demo" / "plan.json").read_text()) if summary else {}
    stages = {sid: rec.get("seconds") for sid, rec in plan.get("stages", {}).items() if rec.get("job_id")}
    print(json.dumps({
        "wall_s": round(wall, 1), "state": summary.get("state"), "returncode": proc.returncode,
        "stage_job_s": stages, "jobs_total_s": round(sum(v or 0 for v in stages.values()), 1),
        "cpu_count": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()], "workspace": str(root),
        "error": None if proc.returncode == 0 else proc.stderr[-2000:],
    }))


if __name__ == "__main__":
    main()
