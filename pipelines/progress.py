"""Progress of a running job, captured from the library's tqdm bars into `progress.json` in the job folder.

The library reports progress with tqdm and knows nothing of jobs; the child process swaps tqdm's class
for `JobTqdm` before it imports the library, so every bar also lands in a small JSON file that the
worker copies to the job row. A file (not the database) keeps the child free of database writes and
works the same when the worker and the database are on different machines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import tqdm as tqdm_module
import tqdm.auto
import tqdm.std

PROGRESS_FILE = "progress.json"
# Bars redraw often; the file is rewritten at most this often (seconds) so a fast loop does not thrash the disk.
WRITE_INTERVAL = 1.0


class ProgressFile:
    """The job's overall progress: stage i of n plus the fraction of the current bar, written atomically."""

    def __init__(self, job_dir: Path):
        self.path = Path(job_dir) / PROGRESS_FILE
        self.stage_index = 0
        self.stage_count = 1
        self.stage_name = ""
        self.bar: dict[str, Any] = {}
        self._last_write = 0.0

    def stage(self, index: int, count: int, name: str) -> None:
        """Start stage `index` (0-based) of `count`; the overall fraction moves from index/count onwards."""
        self.stage_index, self.stage_count, self.stage_name = index, max(count, 1), name
        self.bar = {}
        self.write(force=True)

    def fraction(self) -> float:
        within = 0.0
        total = self.bar.get("total")
        if total:
            within = min(max(self.bar.get("n", 0) / total, 0.0), 1.0)
        return min((self.stage_index + within) / self.stage_count, 1.0)

    def update_bar(self, desc: str | None, n: float, total: float | None, rate: float | None, unit: str) -> None:
        self.bar = {"desc": desc or "", "n": n, "total": total, "rate": rate, "unit": unit}
        self.write()

    def message(self) -> str:
        parts = [f"[{self.stage_index + 1}/{self.stage_count}] {self.stage_name}".strip()]
        if self.bar:
            total = self.bar.get("total")
            n = self.bar.get("n", 0)
            count = f"{n:g}/{total:g}" if total else f"{n:g}"
            parts.append(f"{self.bar.get('desc', '')} {count} {self.bar.get('unit', '')}".strip())
        return " · ".join(p for p in parts if p)

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < WRITE_INTERVAL:
            return
        self._last_write = now
        data = {"fraction": round(self.fraction(), 4), "message": self.message(), "stage": self.stage_name,
                "stage_index": self.stage_index, "stage_count": self.stage_count, "bar": self.bar,
                "updated": time.time()}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)


def read_progress(job_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last progress the job wrote, or None before its first write."""
    path = Path(job_dir) / PROGRESS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


_current: ProgressFile | None = None


class JobTqdm(tqdm.std.tqdm):
    """A tqdm that also feeds the job's progress file; in a log file it redraws every few seconds, not 10x/s."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("mininterval", 1.0)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> Any:
        if _current is not None and not self.disable:
            d = self.format_dict
            _current.update_bar(d.get("prefix") or self.desc, d.get("n", 0), d.get("total"), d.get("rate"),
                                d.get("unit", "it"))
        return super().display(msg, pos)


def use_job_tqdm() -> None:
    """Make `JobTqdm` the tqdm that library modules imported from now on bind (it reports to the current job's
    progress file, or nowhere before `install`). The fork server calls it before it pre-imports anything."""
    # `from tqdm import tqdm` in a library module binds whatever these names hold at import time.
    tqdm_module.tqdm = JobTqdm
    tqdm.std.tqdm = JobTqdm
    tqdm.auto.tqdm = JobTqdm


def install(job_dir: Path) -> ProgressFile:
    """Route every tqdm bar created from now on to `job_dir`'s progress file. Call before importing the library."""
    global _current
    _current = ProgressFile(job_dir)
    use_job_tqdm()
    _current.write(force=True)
    return _current


def current() -> ProgressFile | None:
    return _current
