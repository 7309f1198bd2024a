"""The 50 Hz frame grid every encoder in obt-eval shares (wav2vec2's convolutional front end).

At 16 kHz the receptive field is 400 samples and the stride 320, so a clip of ``n`` samples has
``(n - 400) // 320 + 1`` frames (1 s -> 49) and frame ``i`` covers samples ``[320 i, 320 i + 400)``,
centred at ``0.02 i + 0.0125`` s.

Other front ends keep the 50 Hz rate but centre their frames elsewhere (w2v-BERT 2.0: ``0.02 i + 0.0175``
s, see obt_eval.encoders.base.FrameGrid). Feature stores record their grid in the sidecar
(``frame_rate``, ``frame_offset`` = centre of frame 0) and units stores copy it from the features they
were learned from; `store_frame_timing` reads it back, so phone labels and ABX segments line up with
the frames the encoder really made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 400
HOP = 320
FRAME_RATE = SAMPLE_RATE / HOP  # 50 Hz
FRAME_OFFSET = WINDOW / 2 / SAMPLE_RATE  # 0.0125 s: centre of frame 0 on the wav2vec2 grid


def num_frames(num_samples: int) -> int:
    """Frames the wav2vec2 front end emits for `num_samples` samples (0 if shorter than one window)."""
    return max(0, (int(num_samples) - WINDOW) // HOP + 1)


def frame_center(i: int) -> float:
    """Centre time of frame `i` in seconds."""
    return (i * HOP + WINDOW / 2) / SAMPLE_RATE


def frame_span_samples(first: int, end: int) -> tuple[int, int]:
    """Samples needed to compute frames ``[first, end)`` exactly: ``[320 first, 320 (end-1) + 400)``."""
    return first * HOP, (end - 1) * HOP + WINDOW


def time_to_frame(t: float) -> int:
    """Index of the frame whose centre is nearest to time `t` (seconds), clipped at 0."""
    return max(0, int(round((t * SAMPLE_RATE - WINDOW / 2) / HOP)))


def store_frame_timing(store_or_meta) -> tuple[float, float]:
    """(frames per second, centre of frame 0 in seconds) of a feature or units store, from its sidecar.

    Takes a store (anything with ``.meta``) or its sidecar dict. Stores written before sidecars recorded
    ``frame_offset`` are wav2vec2-grid stores (every encoder then had that front end): 50 Hz, 0.0125 s.
    A units store that lacks it (learned before units recorded it) takes it from the feature store it
    names, when that is still there.
    """
    meta = getattr(store_or_meta, "meta", store_or_meta)
    meta = meta if isinstance(meta, Mapping) else {}
    if meta.get("frame_offset") is None and meta.get("features"):
        try:
            features = json.loads((Path(str(meta["features"])) / "sidecar.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            features = {}
        if isinstance(features, Mapping) and features.get("frame_offset") is not None:
            meta = {"frame_rate": features.get("frame_rate"), "frame_offset": features["frame_offset"]}
    rate = meta.get("frame_rate")
    offset = meta.get("frame_offset")
    return (float(rate) if rate else FRAME_RATE), (FRAME_OFFSET if offset is None else float(offset))


def frame_centres(num: int, frame_rate: float = FRAME_RATE, frame_offset: float = FRAME_OFFSET) -> np.ndarray:
    """Centre times (s) of frames ``0 .. num-1``: ``frame_offset + i / frame_rate``.

    Computed as ``(i + phase) / rate`` with the phase rounded to 1e-9 frames, so the wav2vec2 grid gives
    exactly the numbers it always gave (``(i + 0.625) / 50``) and a phone boundary on a centre falls
    on the same side as before.
    """
    phase = round(frame_offset * frame_rate, 9)
    return (np.arange(num) + phase) / frame_rate
