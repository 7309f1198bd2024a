"""Process checks shared by run locks and the job runner."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists (a process owned by another user counts as alive)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
