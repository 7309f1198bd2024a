"""What every encoder offers the extractor: padded batches in, per-layer frame features out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from obt_eval.frames import HOP, SAMPLE_RATE, WINDOW


@dataclass(frozen=True)
class FrameGrid:
    """Where an encoder's frames sit on the 16 kHz waveform: frame i needs samples ``[hop i, hop i + window)``.

    wav2vec2-family CNN front ends (and XEUS's) use window 400, hop 320. w2v-BERT 2.0 stacks two 25 ms /
    10 ms fbank frames, so its frame i needs ``[320 i, 320 i + 560)``: the same 50 Hz rate, centred 5 ms
    later. Chunks cut on this grid give exactly the frames of the whole file.
    """

    window: int = WINDOW
    hop: int = HOP

    def frames(self, num_samples: int) -> int:
        return max(0, (int(num_samples) - self.window) // self.hop + 1)

    def span(self, first: int, end: int) -> tuple[int, int]:
        """Samples needed to compute frames ``[first, end)``."""
        return first * self.hop, (end - 1) * self.hop + self.window

    @property
    def rate(self) -> float:
        return SAMPLE_RATE / self.hop

    @property
    def offset_seconds(self) -> float:
        """Centre of frame 0."""
        return self.window / 2 / SAMPLE_RATE


WAV2VEC2_GRID = FrameGrid()


class Encoder(ABC):
    """Turns a padded batch of 16 kHz waveforms into features on a 50 Hz grid, for several layers.

    ``encode(waves, lengths, layers, stats=None)`` gets ``waves`` (B, T) float32, zero-padded, and
    ``lengths`` (B,) in samples; it returns ``{layer: (B, frames, dim)}``. Frames past
    ``grid.frames(length)`` of an item are padding and are cut by the caller.

    Encoders whose input is normalised per utterance (zero mean / unit variance waveform, per-bin fbank
    statistics) return those statistics from ``utterance_stats(whole_wave)``; the extractor computes
    them once over the whole utterance and passes one row per batch item as ``stats``, so a chunk, or
    the frame-grid cut of the file's last few samples, is normalised exactly as the untruncated file.
    Without ``stats`` the encoder computes them over each item's real samples.
    """

    name: str
    encoder_id: str
    revision: str | None = None
    licence: str = ""
    # Long files are cut into chunks of at most this many seconds (None: never, no context limit needed).
    max_chunk_seconds: float | None = 30.0
    # Whether zero-padding a batch leaves each item's features unchanged (False: batch size 1).
    pads_exactly: bool = True
    grid: FrameGrid = WAV2VEC2_GRID

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def layers(self) -> list[int | None]:
        """The layers this encoder can return."""

    @abstractmethod
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor, layers: list[int | None], stats=None) -> dict:
        ...

    def utterance_stats(self, wave: np.ndarray) -> np.ndarray | None:
        """Normalisation statistics of one whole utterance (1-D float64), or None if the input is not normalised."""
        return None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _set_identity(self, source: str, name: str | None, licence: str, device, dtype) -> None:
        """Name, id and licence, and where the model runs: the GPU in bf16 when there is one, else the CPU in fp32
        (one rule for every neural encoder, so the same command gives the same numerics on the same machine)."""
        self.name = name or source
        self.encoder_id = source
        self.licence = licence
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype or (torch.bfloat16 if self._device.type == "cuda" else torch.float32)

    def describe(self) -> dict:
        return {"encoder": self.name, "encoder_id": self.encoder_id, "revision": self.revision, "licence": self.licence,
                "frame_offset": self.grid.offset_seconds}


def wave_mean_var(wave: np.ndarray) -> np.ndarray:
    """Mean and (population) variance of a waveform, in float64: the statistics of waveform normalisation."""
    x = np.asarray(wave, dtype=np.float64)
    if x.size == 0:
        return np.array([0.0, 1.0])
    return np.array([x.mean(), x.var()])


def normalise_waves(waves: torch.Tensor, mask: torch.Tensor, stats: torch.Tensor | None, eps: float) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) per row; statistics from `stats` (B, 2) or the row's real samples; padding 0."""
    if stats is None:
        n = mask.sum(dim=1, keepdim=True).clamp_min(1)
        mean = (waves * mask).sum(dim=1, keepdim=True) / n
        var = (((waves - mean) * mask) ** 2).sum(dim=1, keepdim=True) / n
    else:
        stats = stats.to(waves.device, torch.float64)
        mean, var = stats[:, :1], stats[:, 1:2]
        return ((waves.double() - mean) / torch.sqrt(var + eps) * mask).to(waves.dtype)
    return (waves - mean) / torch.sqrt(var + eps) * mask
