"""F0 conditioning: one pitch value per 20 ms unit, normalised per speaker and quantised to levels.

speech-resynthesis quantises speaker-normalised F0 with a separately trained VQ-VAE; textlesslib's
generator also accepts plain binned F0 (`f0_quant_num_bin`). Bins are simpler, need no second
model, and keep what the listening test needs: the original melody under each encoder's units.
Level 0 means unvoiced; levels 1..bins are equal-mass bins of speaker-normalised log-F0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from obt_eval.frames import HOP, SAMPLE_RATE
from obt_eval.vocoder.world import import_pyworld

F0_FRAME_MS = 5.0  # pyworld frame period; 4 pitch frames per 20 ms unit
F0_FLOOR, F0_CEIL = 50.0, 600.0  # wide enough for male, female and child speech


def unit_f0(wave: np.ndarray, num_units: int) -> np.ndarray:
    """F0 in Hz for units ``[0, num_units)`` (unit i <-> samples [320 i, 320 i + 320)); 0 = unvoiced."""
    pw = import_pyworld()
    x = np.asarray(wave, dtype=np.float64)
    need = num_units * HOP
    if x.size < need:
        x = np.pad(x, (0, need - x.size))
    f0, t = pw.dio(x, SAMPLE_RATE, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=F0_FRAME_MS)
    f0 = pw.stonemask(x, f0, t, SAMPLE_RATE)
    per = int(round(HOP / SAMPLE_RATE * 1000 / F0_FRAME_MS))
    f0 = np.pad(f0, (0, max(0, num_units * per - f0.size)))[: num_units * per].reshape(num_units, per)
    voiced = f0 > 0
    # a unit is voiced when at least half of its pitch frames are; its F0 is their median
    out = np.zeros(num_units, np.float32)
    ok = voiced.sum(1) >= per / 2
    masked = np.where(voiced, f0, np.nan)
    if ok.any():
        out[ok] = np.nanmedian(masked[ok], axis=1)
    return out


@dataclass
class F0Quantizer:
    """Per-speaker log-F0 statistics and the bin edges shared by all speakers."""

    bins: int
    speaker_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    global_stats: tuple[float, float] = (float(np.log(150.0)), 0.25)
    edges: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, f0: dict[str, np.ndarray], speakers: dict[str, str], bins: int) -> F0Quantizer:
        by_speaker: dict[str, list[np.ndarray]] = {}
        for uid, values in f0.items():
            by_speaker.setdefault(speakers.get(uid, "unknown"), []).append(np.log(values[values > 0]))
        all_logs = np.concatenate([np.concatenate(v) for v in by_speaker.values()] or [np.zeros(0)])
        q = cls(bins=bins)
        if all_logs.size >= 2:
            q.global_stats = (float(all_logs.mean()), float(max(all_logs.std(), 1e-3)))
        for spk, parts in by_speaker.items():
            logs = np.concatenate(parts)
            q.speaker_stats[spk] = (float(logs.mean()), float(max(logs.std(), 1e-3))) if logs.size >= 2 \
                else q.global_stats
        normed = np.concatenate([q.normalise(np.exp(np.concatenate(p)), s) for s, p in by_speaker.items()]
                                or [np.zeros(0)])
        if normed.size:
            q.edges = np.quantile(normed, np.arange(1, bins) / bins).astype(float).tolist()
        else:
            q.edges = np.linspace(-2, 2, bins + 1)[1:-1].tolist()
        return q

    def normalise(self, f0_voiced: np.ndarray, speaker: str | None) -> np.ndarray:
        mean, std = self.speaker_stats.get(speaker or "", self.global_stats)
        return (np.log(f0_voiced) - mean) / std

    def quantise(self, f0: np.ndarray, speaker: str | None) -> np.ndarray:
        """Hz per unit -> levels (0 unvoiced, 1..bins); unknown speakers use the global statistics."""
        f0 = np.asarray(f0, dtype=np.float64)
        levels = np.zeros(f0.shape, np.int64)
        voiced = f0 > 0
        if voiced.any():
            levels[voiced] = np.searchsorted(np.asarray(self.edges), self.normalise(f0[voiced], speaker)) + 1
        return levels

    def to_dict(self) -> dict:
        return {"bins": self.bins, "speaker_stats": {k: list(v) for k, v in self.speaker_stats.items()},
                "global_stats": list(self.global_stats), "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, data: dict) -> F0Quantizer:
        return cls(bins=int(data["bins"]), speaker_stats={k: tuple(v) for k, v in data["speaker_stats"].items()},
                   global_stats=tuple(data["global_stats"]), edges=list(data["edges"]))
