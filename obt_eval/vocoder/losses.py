"""Losses of HiFi-GAN training: least-squares GAN, feature matching and L1 on log-mel spectrograms."""

from __future__ import annotations

import functools

import librosa
import torch
import torch.nn.functional as F

from obt_eval.vocoder.config import MelConfig


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)).float()


def mel_spectrogram(wave: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Log-mel as HiFi-GAN's meldataset.py computes it: reflect pad, magnitude STFT, log(clamp 1e-5).

    Always in fp32: under autocast the STFT of a bf16 signal loses the quiet bands the loss is about.
    """
    if wave.dim() == 3:
        wave = wave.squeeze(1)
    wave = wave.float()
    basis = _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.num_mels, cfg.fmin, cfg.fmax).to(wave.device)
    window = torch.hann_window(cfg.win_size, device=wave.device)
    pad = (cfg.n_fft - cfg.hop_size) // 2
    with torch.autocast(device_type=wave.device.type, enabled=False):
        x = F.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size, window=window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return torch.log(torch.clamp(basis @ mag, min=1e-5))


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: mean((1 - D(y))^2) + mean(D(G(x))^2), summed over sub-discriminators."""
    loss = real[0].new_zeros(())
    for r, g in zip(real, fake, strict=True):
        loss = loss + torch.mean((1 - r.float()) ** 2) + torch.mean(g.float() ** 2)
    return loss


def generator_adv_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    loss = fake[0].new_zeros(())
    for g in fake:
        loss = loss + torch.mean((1 - g.float()) ** 2)
    return loss


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum of mean |D_l(y) - D_l(G(x))| over layers; the x2 weight is applied by the caller."""
    loss = real[0][0].new_zeros(())
    for dr, dg in zip(real, fake, strict=True):
        for r, g in zip(dr, dg, strict=True):
            loss = loss + torch.mean(torch.abs(r.detach().float() - g.float()))
    return loss


def split_batch(outputs: tuple[list[torch.Tensor], list[list[torch.Tensor]]], n: int):
    """Split the discriminator outputs of cat([real, fake]) into (real scores, fake scores, real fmaps, fake fmaps)."""
    scores, fmaps = outputs
    real_s = [s[:n] for s in scores]
    fake_s = [s[n:] for s in scores]
    real_f = [[f[:n] for f in fm] for fm in fmaps]
    fake_f = [[f[n:] for f in fm] for fm in fmaps]
    return real_s, fake_s, real_f, fake_f
