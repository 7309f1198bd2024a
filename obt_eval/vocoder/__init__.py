"""Unit vocoders: a unit HiFi-GAN per encoder, trained resumably, synthesis of comparable stimuli,
and objective resynthesis metrics against the original recordings.

    from obt_eval.vocoder import preset, train_vocoder, Vocoder, synthesize_units, resynthesis_metrics

The names load on first use: `obt_eval.vocoder.config` (presets, read by every option check in the app, the
CLI and the worker) must not pull torch, scipy.signal and pyloudnorm in with it (seconds on 2 cores).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "codebook_hash": "checkpoint",
    "PRESETS": "config", "VocoderConfig": "config", "preset": "config",
    "compare": "metrics", "resynthesis_metrics": "metrics", "summarise": "metrics",
    "OutputPolicy": "postprocess",
    "SynthesisReport": "synthesis", "SynthItem": "synthesis", "Vocoder": "synthesis", "synthesize_units": "synthesis",
    "TrainResult": "train", "train_vocoder": "train",
}

__all__ = sorted(_WHERE, key=str.lower)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
