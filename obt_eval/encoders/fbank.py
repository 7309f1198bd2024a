"""w2v-BERT 2.0's input features in torch: Kaldi-style 80-bin log-mel fbank, per-bin normalised, stacked by 2.

The same computation as transformers' ``SeamlessM4TFeatureExtractor`` (25 ms povey window, 10 ms hop,
16-bit scale, DC removal, pre-emphasis 0.97, 512-point FFT, Kaldi mel filters, natural log with floor
1.19e-7; then zero mean / unit variance per mel bin over the utterance, ddof 1; then pairs of frames
concatenated into 160-d frames at 50 Hz), batched and on the encoder's device instead of a per-frame
numpy loop. Fbank frames are computed window by window, so a chunk starting at sample 320 a yields
the whole file's fbank frames 2a, 2a+1, ... exactly; only the per-bin statistics are global, and
those are computed once per utterance (`fbank_stats`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

FBANK_WINDOW = 400
FBANK_HOP = 160
N_FFT = 512
NUM_MEL_BINS = 80
STRIDE = 2
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07


@functools.lru_cache(maxsize=1)
def _window_and_filters() -> tuple[np.ndarray, np.ndarray]:
    from transformers import SeamlessM4TFeatureExtractor

    # Take the exact arrays transformers builds (povey window, Kaldi mel scale 20 Hz .. 8 kHz).
    extractor = SeamlessM4TFeatureExtractor(feature_size=NUM_MEL_BINS, num_mel_bins=NUM_MEL_BINS)
    return np.asarray(extractor.window, np.float64), np.asarray(extractor.mel_filters, np.float64)


def log_mel_fbank(waves: torch.Tensor) -> torch.Tensor:
    """(B, T) waveforms in [-1, 1] -> (B, F, 80) log-mel frames, F = (T - 400) // 160 + 1 (float64)."""
    window, filters = _window_and_filters()
    x = waves.to(torch.float64) * 32768.0
    if x.shape[-1] < FBANK_WINDOW:
        return torch.zeros(x.shape[0], 0, NUM_MEL_BINS, dtype=torch.float64, device=x.device)
    frames = x.unfold(-1, FBANK_WINDOW, FBANK_HOP)  # (B, F, 400)
    frames = frames - frames.mean(-1, keepdim=True)
    emphasised = torch.cat([frames[..., :1] * (1 - PREEMPHASIS), frames[..., 1:] - PREEMPHASIS * frames[..., :-1]], -1)
    spectrum = torch.fft.rfft(emphasised * torch.from_numpy(window).to(x.device), n=N_FFT).abs().pow(2)
    mel = spectrum @ torch.from_numpy(filters).to(x.device)  # filters: (257, 80)
    return torch.log(mel.clamp_min(MEL_FLOOR))


def fbank_stats(wave: np.ndarray) -> np.ndarray:
    """Per-bin mean and standard deviation (ddof 1) of one whole utterance's fbank: 160 floats."""
    fb = log_mel_fbank(torch.from_numpy(np.asarray(wave, np.float32))[None])[0]
    if fb.shape[0] == 0:
        return np.concatenate([np.zeros(NUM_MEL_BINS), np.ones(NUM_MEL_BINS)])
    std = fb.std(0, unbiased=True) if fb.shape[0] > 1 else torch.zeros(NUM_MEL_BINS, dtype=fb.dtype)
    return torch.cat([fb.mean(0), std]).numpy()


def stacked_features(waves: torch.Tensor, lengths: torch.Tensor, stats: torch.Tensor | None) -> tuple:
    """Model input for a padded batch: ((B, frames, 160) features, (B, frames) bool mask of real frames).

    `stats` (B, 160) are each item's whole-utterance bin statistics; None: computed over the item's
    own real fbank frames (what the feature extractor does for a lone file).
    """
    fb = log_mel_fbank(waves)
    n_fb = ((lengths.to(fb.device) - FBANK_WINDOW) // FBANK_HOP + 1).clamp_min(0)
    fb_mask = torch.arange(fb.shape[1], device=fb.device)[None, :] < n_fb[:, None]
    if stats is None:
        m = fb_mask.unsqueeze(-1).to(fb.dtype)
        count = m.sum(1).clamp_min(1)
        mean = (fb * m).sum(1) / count
        var = (((fb - mean[:, None]) * m) ** 2).sum(1) / (count - 1).clamp_min(1)
        std = var.sqrt()
    else:
        stats = stats.to(fb.device, fb.dtype)
        mean, std = stats[:, :NUM_MEL_BINS], stats[:, NUM_MEL_BINS:]
    normed = (fb - mean[:, None]) / torch.sqrt(std[:, None] ** 2 + 1e-7) * fb_mask.unsqueeze(-1)
    usable = normed.shape[1] - normed.shape[1] % STRIDE
    stacked = normed[:, :usable].reshape(normed.shape[0], usable // STRIDE, NUM_MEL_BINS * STRIDE)
    frames = n_fb // STRIDE
    mask = torch.arange(stacked.shape[1], device=fb.device)[None, :] < frames[:, None]
    return stacked.to(torch.float32), mask
