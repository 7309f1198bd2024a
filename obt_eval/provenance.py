"""What every artifact sidecar records about how it was made (code version, time, host)."""

from __future__ import annotations

import datetime as _dt
import platform

import obt_eval


def provenance() -> dict:
    return {
        "obt_eval_version": obt_eval.__version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
    }
