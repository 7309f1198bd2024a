"""One GPU job per GPU at a time, across every worker process on the machine, with file locks.

The locks live in the machine's temp folder, not in the (possibly shared) workspace: GPUs belong to a
machine, and several worker processes on it must not put two jobs on one device.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ENV_GPUS = "OBT_EVAL_GPUS"  # job slots of this machine (default: CUDA devices, or 1 CPU slot); CPU slots without CUDA
# The folder of the slot locks (default: one per user in the machine's temp folder). Test runs give each
# process its own, so that parallel test workers, each playing a machine of its own, do not wait on each
# other's slots.
ENV_SLOT_LOCKS = "OBT_EVAL_SLOT_LOCKS"


def gpu_count() -> int:
    """CUDA devices visible here; 0 without a GPU. `OBT_EVAL_GPUS` overrides (e.g. 1 to share one GPU)."""
    if os.environ.get(ENV_GPUS):
        return max(0, int(os.environ[ENV_GPUS]))
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


@functools.cache
def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def slot_device(index: int | None) -> str | None:
    """The device of a job holding slot `index`: its GPU ("cuda") where CUDA exists, else the CPU (None).

    On a machine without CUDA, `OBT_EVAL_GPUS=2` (or `--slots 2`) means two CPU slots: two jobs at once.
    """
    if index is None or not cuda_available():
        return None
    return "cuda"


def lock_dir() -> Path:
    path = Path(os.environ.get(ENV_SLOT_LOCKS) or Path(tempfile.gettempdir()) / f"obt-eval-slots-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def gpu_slot(count: int, poll: float = 0.5, timeout: float | None = None) -> Iterator[int | None]:
    """Hold one of `count` slots (yields its index, the CUDA device to use); `count == 0` means CPU, one slot.

    A slot is a `flock` on a file, released by the kernel if the holder dies, so a crash never leaves a
    GPU marked busy.
    """
    slots = max(count, 1)
    start = time.monotonic()
    while True:
        for index in range(slots):
            fh = open(lock_dir() / f"slot-{index}.lock", "a+")  # noqa: SIM115 — held for the whole job
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            try:
                yield index if count > 0 else None
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError("no free GPU slot")
        time.sleep(poll)
