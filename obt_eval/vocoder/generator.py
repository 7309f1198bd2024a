"""The unit HiFi-GAN generator: unit (+ speaker, + quantised F0) embeddings -> 16 kHz waveform.

A port of speech-resynthesis' `CodeGenerator` (HiFi-GAN V1 with a unit lookup table in front),
with fairseq's duration predictor so the same model can speak from deduplicated units.
Each unit becomes exactly ``prod(upsample_rates)`` = 320 samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from obt_eval.vocoder.config import GeneratorConfig

LRELU_SLOPE = 0.1  # jik876/hifi-gan models.py


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def _wn(module: nn.Module) -> nn.Module:
    return parametrizations.weight_norm(module)


def init_weights(module: nn.Module, std: float = 0.01) -> None:
    # HiFi-GAN's init: N(0, 0.01) for every conv before weight norm splits it
    if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
        module.weight.data.normal_(0.0, std)


class ResBlock(nn.Module):
    """HiFi-GAN ResBlock1: dilated conv pairs with residual connections (one MRF branch)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1))
            for _ in dilations
        )
        self.convs1.apply(init_weights)
        self.convs2.apply(init_weights)
        for conv in [*self.convs1, *self.convs2]:
            _wn(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = xt + x
        return x


class DurationPredictor(nn.Module):
    """fairseq's VariancePredictor: predicts log(1 + duration in frames) for each deduplicated unit."""

    def __init__(self, in_dim: int, hidden: int, kernel: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(in_dim, hidden, kernel, padding=(kernel - 1) // 2)
        self.ln1 = nn.LayerNorm(hidden)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel, padding=(kernel - 1) // 2)
        self.ln2 = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, units) -> (batch, units) log-durations."""
        h = F.relu(self.conv1(x)).transpose(1, 2)
        h = self.dropout(self.ln1(h))
        h = F.relu(self.conv2(h.transpose(1, 2))).transpose(1, 2)
        h = self.dropout(self.ln2(h))
        return self.proj(h).squeeze(-1)


class UnitGenerator(nn.Module):
    """Units (batch, frames) -> waveform (batch, 1, frames * 320)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.unit_embedding = nn.Embedding(cfg.num_units, cfg.unit_dim)
        in_dim = cfg.unit_dim
        self.speaker_embedding = None
        if cfg.num_speakers > 0:
            self.speaker_embedding = nn.Embedding(cfg.num_speakers, cfg.speaker_dim)
            in_dim += cfg.speaker_dim
        self.f0_embedding = None
        if cfg.f0_bins > 0:
            self.f0_embedding = nn.Embedding(cfg.f0_bins + 1, cfg.f0_dim)  # +1: the unvoiced level
            in_dim += cfg.f0_dim
        self.duration = None
        if cfg.duration_predictor:
            dur_in = cfg.unit_dim + (cfg.speaker_dim if cfg.num_speakers > 0 else 0)
            self.duration = DurationPredictor(dur_in, cfg.duration_hidden, cfg.duration_kernel, cfg.duration_dropout)

        ch = cfg.upsample_initial_channel
        self.conv_pre = _wn(nn.Conv1d(in_dim, ch, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True)):
            c_in, c_out = ch // (2**i), ch // (2 ** (i + 1))
            up = nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2)
            init_weights(up)
            self.ups.append(_wn(up))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock(c_out, k, tuple(d)))
        conv_post = nn.Conv1d(ch // (2 ** len(cfg.upsample_rates)), 1, 7, 1, padding=3)
        init_weights(conv_post)
        self.conv_post = _wn(conv_post)
        self.num_kernels = len(cfg.resblock_kernel_sizes)

    def conditioning(self, units: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """Unit (+ speaker) embeddings, (batch, channels, frames): what the duration predictor sees."""
        x = self.unit_embedding(units).transpose(1, 2)
        if self.speaker_embedding is not None:
            if speaker is None:
                raise ValueError("this vocoder has a speaker embedding: pass speaker ids")
            spk = self.speaker_embedding(speaker).unsqueeze(-1).expand(-1, -1, x.shape[-1])
            x = torch.cat([x, spk], dim=1)
        return x

    def forward(
        self, units: torch.Tensor, speaker: torch.Tensor | None = None, f0: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.conditioning(units, speaker)
        if self.f0_embedding is not None:
            if f0 is None:
                raise ValueError("this vocoder is F0-conditioned: pass quantised F0 levels per unit")
            x = torch.cat([x, self.f0_embedding(f0).transpose(1, 2)], dim=1)
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # HiFi-GAN uses the default 0.01 slope here
        return torch.tanh(x)

    def predict_durations(self, units: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """Frames per deduplicated unit: clamp(round(exp(pred) - 1), min=1), as fairseq does."""
        if self.duration is None:
            raise ValueError("this vocoder was trained without a duration predictor")
        log_dur = self.duration(self.conditioning(units, speaker))
        return torch.clamp(torch.round(torch.exp(log_dur) - 1), min=1).long()

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights: same output, faster inference."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
