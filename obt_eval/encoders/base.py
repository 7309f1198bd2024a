"""What every encoder offers the extractor: padded batches in, per-layer frame features out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Encoder(ABC):
    """Turns a padded batch of 16 kHz waveforms into features on the 50 Hz grid, for several layers.

    ``encode(waves, lengths, layers)`` gets ``waves`` (B, T) float32 on the encoder's device, zero-padded,
    and ``lengths`` (B,) in samples; it returns ``{layer: (B, frames, dim)}``. Frames past
    ``num_frames(length)`` of an item are padding and are cut by the caller.
    """

    name: str
    encoder_id: str
    revision: str | None = None
    licence: str = ""
    # Long files are cut into chunks of at most this many seconds (None: never, no context limit needed).
    max_chunk_seconds: float | None = 30.0
    # Whether zero-padding a batch leaves each item's features unchanged (False: batch size 1).
    pads_exactly: bool = True

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def layers(self) -> list[int | None]:
        """The layers this encoder can return."""

    @abstractmethod
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor, layers: list[int | None]) -> dict:
        ...

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def describe(self) -> dict:
        return {"encoder": self.name, "encoder_id": self.encoder_id, "revision": self.revision, "licence": self.licence}
