"""The 50 Hz frame grid every encoder in obt-eval shares (wav2vec2's convolutional front end).

At 16 kHz the receptive field is 400 samples and the stride 320, so a clip of ``n`` samples has
``(n - 400) // 320 + 1`` frames (1 s -> 49) and frame ``i`` covers samples ``[320 i, 320 i + 400)``,
centred at ``0.02 i + 0.0125`` s.
"""

from __future__ import annotations

SAMPLE_RATE = 16_000
WINDOW = 400
HOP = 320
FRAME_RATE = SAMPLE_RATE / HOP  # 50 Hz


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
