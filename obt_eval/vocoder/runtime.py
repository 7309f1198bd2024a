"""Process plumbing of a training run: devices, torchrun/DDP process groups, one run per folder.

Under ``torchrun`` the environment carries RANK / WORLD_SIZE / LOCAL_RANK; without it the same code
runs as a single process with no process group, so nothing changes for one GPU or a CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from obt_eval.errors import BadInputError
from obt_eval.processes import pid_alive


@dataclass
class DistInfo:
    """Which process of how many this is; rank 0 writes checkpoints, logs and samples."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> tuple[DistInfo, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device is None:
        device = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return info, dev


@contextlib.contextmanager
def no_sync(*modules: nn.Module):
    """DDP modules' no_sync() together: skip gradient all-reduce for a backward pass."""
    with contextlib.ExitStack() as stack:
        for m in modules:
            stack.enter_context(m.no_sync())
        yield


@contextlib.contextmanager
def run_lock(out_dir: Path, main: bool):
    """Refuse a second training process on the same folder: both would write the same checkpoints."""
    lock = out_dir / ".train.lock"
    if not main:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if pid and pid != os.getpid() and pid_alive(pid):
            raise BadInputError(f"another training (process {pid}) is running in {out_dir}",
                                "wait for it to finish or stop it; a stopped run resumes from its last checkpoint")
    lock.write_text(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)

