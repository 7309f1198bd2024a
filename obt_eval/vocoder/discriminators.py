"""HiFi-GAN's multi-period and multi-scale discriminators (jik876/hifi-gan models.py).

Both take real and generated audio in one batch (concatenated) so each training phase makes a
single forward pass per discriminator; `width` scales every channel count for tiny test models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from obt_eval.vocoder.config import DiscriminatorConfig
from obt_eval.vocoder.generator import LRELU_SLOPE, get_padding

Outputs = tuple[list[torch.Tensor], list[list[torch.Tensor]]]  # scores, feature maps per sub-discriminator


def _ch(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _norm(module: nn.Module, spectral: bool) -> nn.Module:
    return parametrizations.spectral_norm(module) if spectral else parametrizations.weight_norm(module)


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, width: float = 1.0, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        chans = [1] + [_ch(c, width) for c in (32, 128, 512, 1024, 1024)]
        pad = (get_padding(5, 1), 0)
        self.convs = nn.ModuleList(
            _norm(nn.Conv2d(chans[i], chans[i + 1], (kernel_size, 1), (stride if i < 4 else 1, 1),
                            padding=pad if i < 4 else (2, 0)), False)
            for i in range(5)
        )
        self.conv_post = _norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)), False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class ScaleDiscriminator(nn.Module):
    # (in, out, kernel, stride, groups, padding) of the published MSD sub-discriminator
    LAYERS = ((1, 128, 15, 1, 1, 7), (128, 128, 41, 2, 4, 20), (128, 256, 41, 2, 16, 20),
              (256, 512, 41, 4, 16, 20), (512, 1024, 41, 4, 16, 20), (1024, 1024, 41, 1, 16, 20),
              (1024, 1024, 5, 1, 1, 2))

    def __init__(self, width: float = 1.0, spectral: bool = False):
        super().__init__()
        convs = []
        for c_in, c_out, k, s, g, p in self.LAYERS:
            ci = 1 if c_in == 1 else _ch(c_in, width)
            co = _ch(c_out, width)
            convs.append(_norm(nn.Conv1d(ci, co, k, s, groups=math.gcd(g, ci, co), padding=p), spectral))
        self.convs = nn.ModuleList(convs)
        self.conv_post = _norm(nn.Conv1d(_ch(1024, width), 1, 3, 1, padding=1), spectral)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, cfg.width) for p in cfg.periods)

    def forward(self, x: torch.Tensor) -> Outputs:
        scores, fmaps = [], []
        for d in self.discriminators:
            s, f = d(x)
            scores.append(s)
            fmaps.append(f)
        return scores, fmaps


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        # the first scale uses spectral norm, the others weight norm, as published
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(cfg.width, spectral=(i == 0)) for i in range(cfg.num_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: torch.Tensor) -> Outputs:
        scores, fmaps = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            s, f = d(x)
            scores.append(s)
            fmaps.append(f)
        return scores, fmaps
