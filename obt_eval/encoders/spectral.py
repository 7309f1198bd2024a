"""Weightless baselines on wav2vec2's frame grid: 80-d log-mel and 39-d MFCC (+Δ, ΔΔ).

Window 400 samples (25 ms), hop 320 (20 ms), no centring, so frame i covers the same samples as
wav2vec2's frame i. They let the whole pipeline run offline and give a floor that an SSL encoder
must beat.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import torch

from obt_eval.encoders.base import Encoder
from obt_eval.errors import BadInputError
from obt_eval.frames import HOP, SAMPLE_RATE, WINDOW

N_FFT = 512  # 400-sample window zero-padded to 512 (Kaldi's choice)


@functools.lru_cache(maxsize=4)
def _mel_basis(n_mels: int, fmin: float = 20.0, fmax: float = SAMPLE_RATE / 2) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale, (n_mels, N_FFT // 2 + 1).

    Written out rather than taken from librosa, whose import (numba) costs seconds per process.
    """
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges = 700.0 * (10 ** (np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    rising = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - freqs[None, :]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(waves: torch.Tensor, n_mels: int) -> torch.Tensor:
    """(B, T) -> (B, frames, n_mels) natural-log mel power, floor 1e-10."""
    frames = waves.unfold(-1, WINDOW, HOP)  # (B, F, 400)
    window = torch.hann_window(WINDOW, periodic=False, dtype=waves.dtype, device=waves.device)
    spec = torch.fft.rfft(frames * window, n=N_FFT).abs().pow(2)
    mel = spec @ torch.from_numpy(_mel_basis(n_mels)).to(waves).T
    return torch.log(mel.clamp_min(1e-10))


def deltas(x: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over time (HTK formula, edges repeated), x: (frames, dim)."""
    padded = torch.cat([x[:1].expand(width, -1), x, x[-1:].expand(width, -1)])
    n = x.shape[0]
    num = sum(k * (padded[width + k : width + k + n] - padded[width - k : width - k + n]) for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


class SpectralEncoder(Encoder):
    licence = "none (no weights)"

    def __init__(self, kind: str, device: str | torch.device = "cpu"):
        if kind not in ("mfcc", "logmel"):
            raise BadInputError(f"unknown spectral encoder {kind!r}")
        self.name = self.encoder_id = kind
        self.kind = kind
        self._device = torch.device(device)
        self._dct = torch.from_numpy(scipy.fft.dct(np.eye(40), type=2, norm="ortho", axis=0)[:13].T.copy()).float()

    @property
    def dim(self) -> int:
        return 39 if self.kind == "mfcc" else 80

    @property
    def layers(self) -> list[int | None]:
        return [None]

    @property
    def device(self) -> torch.device:
        return self._device

    # Frames are independent (deltas are computed per whole utterance), so never chunk.
    max_chunk_seconds = None

    @torch.inference_mode()
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor, layers: list[int | None], stats=None) -> dict:
        if any(layer is not None for layer in layers):
            raise BadInputError(f"the {self.kind} baseline has no layers", "leave out --layer/--layers for it")
        waves = waves.to(self._device, torch.float32)
        if self.kind == "logmel":
            return {None: log_mel(waves, 80)}
        cepstra = log_mel(waves, 40) @ self._dct.to(waves)  # (B, F, 13)
        n_frames = ((lengths - WINDOW) // HOP + 1).clamp_min(0).tolist()
        out = torch.zeros(*cepstra.shape[:2], 39, device=waves.device)
        for i, n in enumerate(n_frames):  # deltas per item so padding never leaks in
            c = cepstra[i, :n]
            if n:
                d1 = deltas(c)
                out[i, :n] = torch.cat([c, d1, deltas(d1)], dim=-1)
        return {None: out}
