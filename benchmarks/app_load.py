"""App responsiveness under load: N simulated raters rating at once over HTTP on localhost.

Starts ``python app.py`` (no job worker) on a generated study with one block per rater, then each
simulated rater speaks the rating page's protocol (`webapp.rater_page`: JSON calls, audio GETs, play/end reports):
join, profile, and per trial: fetch both clips, play/end reports after the clip's real duration (the last end's
answer unlocks the ratings in the page), submit (records the rating and returns the next trial); every third
trial also a reload (serves the current trial again, as a refresh or a second device does).
Prints one JSON object: median and p95 latency per call kind, ratings submitted vs stored (none lost),
and the app process's CPU time per stored rating (less sensitive than latency to other load on the machine).

    python benchmarks/app_load.py --raters 50 --trials 12 --max-seconds 300          # realistic pace
    python benchmarks/app_load.py --raters 50 --clip-seconds 0.5 --think-seconds 0   # stress: ~10x faster
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

class Rater:
    """One simulated rater: the calls a phone makes, timed at the client."""

    def __init__(self, base: str, invite: str, clip_seconds: float, think_seconds: float, timings: dict, lock):
        self.base, self.invite, self.clip, self.think = base, invite, clip_seconds, think_seconds
        self.http = httpx.Client(timeout=60)
        self.timings, self.lock = timings, lock
        self.submitted = 0
        self.start_delay = 0.0
        self.errors: list[str] = []

    def timed(self, kind: str, method: str, path: str, body: dict | None = None) -> httpx.Response:
        t0 = time.perf_counter()
        response = self.http.request(method, f"{self.base}{path}", json=body)
        response.raise_for_status()
        with self.lock:
            self.timings.setdefault(kind, []).append(time.perf_counter() - t0)
        return response

    def call(self, kind: str, path: str, body: dict) -> dict:
        return self.timed(kind, "POST", f"/rate/api/{path}", {"invite": self.invite, **body}).json()

    def run(self, max_trials: int, deadline: float) -> None:
        try:
            time.sleep(self.start_delay)  # raters arrive over a few seconds, not in one instant
            screen = self.call("join", "open", {})
            screen = self.call("profile", "profile", {"native": "Yes", "linguist": "No", "languages": "pt",
                                                      "consent": True})
            trial = screen.get("trial")
            for n in range(max_trials):
                if time.monotonic() > deadline or screen["screen"] != "trial" or trial is None:
                    break
                if n % 3 == 2:  # now and then a reload (refresh, another device): serves the current trial again
                    screen = self.call("join", "open", {})
                    trial = screen["trial"]
                both = False
                for slot in "AB":  # A, then B, each to its end
                    url = f"/{trial['audio'][slot]}"
                    audio = self.timed("audio", "GET", url)
                    self.timed("play_event", "POST", f"{url}/play")
                    # the server refuses an "ended" sooner than the clip lasts (its sound plus the padding)
                    rate = int.from_bytes(audio.content[24:28], "little")  # a bare 44-byte-header 16-bit WAV
                    time.sleep((len(audio.content) - 44) / 2 / rate + 0.05)
                    both = self.timed("ended_event", "POST", f"{url}/ended").json()["both"]
                if not both:
                    self.errors.append("the server did not report both clips fully played")
                time.sleep(self.think)
                screen = self.call("submit", "submit", {"trial": trial["token"], "a": 4, "b": 3, "preference": "A"})
                if screen.get("saved"):
                    self.submitted += 1
                else:
                    self.errors.append(f"submit not saved: {json.dumps(screen)[:200]}")
                trial = screen.get("trial")
        except Exception as exc:  # noqa: BLE001 — one failing rater is reported, the others go on
            self.errors.append(f"{type(exc).__name__}: {exc}")


def run_raters(base: str, plan: list[tuple[str, float]], clip_seconds: float, think_seconds: float,
               trials: int, max_seconds: float, results) -> None:  # noqa: ANN001 — a multiprocessing queue
    """One client process: its raters, one thread each; puts (timings, ratings submitted, errors) on `results`."""
    timings: dict[str, list[float]] = {}
    lock = threading.Lock()
    raters = [Rater(base, invite, clip_seconds, think_seconds, timings, lock) for invite, _ in plan]
    for rater, (_, delay) in zip(raters, plan, strict=True):
        rater.start_delay = delay
    deadline = time.monotonic() + max_seconds
    threads = [threading.Thread(target=r.run, args=(trials, deadline)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((timings, sum(r.submitted for r in raters), [e for r in raters for e in r.errors]))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"n": 0}
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return {"n": len(values), "median_ms": round(1000 * statistics.median(values), 1), "p95_ms": round(1000 * p95, 1),
            "max_ms": round(1000 * values[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--trials", type=int, default=12, help="trials per rater (a block has 12)")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--clip-seconds", type=float, default=2.0, help="length of every clip (A and B)")
    parser.add_argument("--client-processes", type=int, default=min(8, os.cpu_count() or 1) * 2,
                        help="processes the simulated raters are spread over (a browser each, in reality)")
    parser.add_argument("--think-seconds", type=float, default=3.0,
                        help="time to decide after both clips (0: a stress test far above real raters' pace)")
    args = parser.parse_args()

    from obt_eval.workspace import Workspace
    from webapp.sample import make_sample_study

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        ws = Workspace.at(root)
        t0 = time.perf_counter()
        made = make_sample_study(ws, utterances=10, seconds=args.clip_seconds, raters=args.raters,
                                 target_ratings=args.raters, trials_per_block=10)
        setup_s = time.perf_counter() - t0
        port = free_port()
        env = {**os.environ, "OBT_EVAL_HOME": str(root), "OBT_EVAL_ADMIN_PASSWORD": "bench",
               "OBT_EVAL_START_WORKER": "0", "PORT": str(port)}
        server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            rng = random.Random(0)
            plan = [(i["invite_token"], rng.uniform(0, 2 * args.clip_seconds + args.think_seconds))
                    for i in made["invites"]]
            groups = [plan[k::args.client_processes] for k in range(args.client_processes)]
            cpu_before = cpu_seconds(server.pid)
            deadline_s = args.max_seconds
            t_run = time.perf_counter()
            # Real raters are separate browsers: the simulated ones run in several processes, so the client's own
            # GIL does not add its queueing to the latencies measured.
            ctx = multiprocessing.get_context("spawn")
            results = ctx.Queue()
            clients = [ctx.Process(target=run_raters, args=(base, group, args.clip_seconds,
                                                            args.think_seconds, args.trials, deadline_s, results))
                       for group in groups if group]
            for c in clients:
                c.start()
            timings: dict[str, list[float]] = {}
            outcomes = []
            for _ in clients:
                part, submitted, errors = results.get()
                for kind, values in part.items():
                    timings.setdefault(kind, []).extend(values)
                outcomes.append((submitted, errors))
            for c in clients:
                c.join()
            wall = time.perf_counter() - t_run
            server_cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=30)

        from sqlalchemy import func, select

        from db.models import Trial
        from pipelines.jobs import database

        with database(ws).session() as s:
            stored = s.scalar(select(func.count(Trial.id)).where(Trial.submitted_at.is_not(None)))
        submitted = sum(n for n, _ in outcomes)
        errors = [e for _, errs in outcomes for e in errs]
        out = {
            "raters": args.raters, "trials_per_rater": args.trials, "cpu_cores": os.cpu_count(),
            "clip_seconds": args.clip_seconds, "think_seconds": args.think_seconds,
            "client_processes": len(outcomes), "trials_per_second": round(submitted / wall, 2),
            "setup_seconds": round(setup_s, 1), "run_seconds": round(wall, 1),
            "serve_trial_on_join_or_reload": summary(timings.get("join", [])),
            "record_rating_and_serve_next_trial": summary(timings.get("submit", [])),
            "profile": summary(timings.get("profile", [])),
            "play_event": summary(timings.get("play_event", [])),
            "ended_event": summary(timings.get("ended_event", [])),
            "audio_fetch": summary(timings.get("audio", [])),
            "ratings_submitted": submitted, "ratings_stored": int(stored), "ratings_lost": submitted - int(stored),
            "server_cpu_seconds": round(server_cpu, 1),
            "server_cpu_ms_per_rating": round(1000 * server_cpu / max(1, int(stored)), 1),
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "errors": errors[:10], "num_errors": len(errors),
        }
        print(json.dumps(out))


if __name__ == "__main__":
    main()
