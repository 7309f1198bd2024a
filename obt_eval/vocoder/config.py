"""Configuration of the unit vocoder: model shape, losses and training schedule as dataclasses.

Defaults are the published unit HiFi-GAN recipe so that a vocoder trained here is the one the
literature reports on, not a toy; the `tiny` preset exists only so tests and smoke runs fit on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from obt_eval.errors import BadInputError
from obt_eval.frames import HOP, SAMPLE_RATE


@dataclass
class GeneratorConfig:
    """Unit HiFi-GAN generator (`CodeGenerator`) plus optional speaker, F0 and duration heads."""

    # facebookresearch/speech-resynthesis configs/LJSpeech/hubert100_lut.json (embedding_dim, V1 generator)
    num_units: int = 100
    unit_dim: int = 128
    num_speakers: int = 0  # 0: no speaker embedding
    speaker_dim: int = 128
    # textlesslib hifigan generator `f0_quant_num_bin`; 20 levels like speech-resynthesis' F0 VQ (l_bins 20)
    f0_bins: int = 0  # 0: no F0 conditioning; otherwise quantised log-F0 levels (+1 "unvoiced" level)
    f0_dim: int = 128
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (11, 8, 8, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    # fairseq examples/speech_to_speech_translation DurationCodeGenerator / VariancePredictor
    duration_predictor: bool = False
    duration_hidden: int = 128
    duration_kernel: int = 3
    duration_dropout: float = 0.5

    @property
    def hop(self) -> int:
        hop = 1
        for rate in self.upsample_rates:
            hop *= rate
        return hop

    def validate(self) -> None:
        if self.hop != HOP:
            raise BadInputError(
                f"upsample_rates {self.upsample_rates} give {self.hop} samples per unit, not {HOP}",
                "units are 20 ms frames at 16 kHz: use rates whose product is 320, e.g. 5,4,4,2,2",
            )
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise BadInputError("upsample_rates and upsample_kernel_sizes differ in length")
        if self.upsample_initial_channel < 2 ** len(self.upsample_rates):
            raise BadInputError(
                f"upsample_initial_channel {self.upsample_initial_channel} is halved {len(self.upsample_rates)} times",
                f"use at least {2 ** len(self.upsample_rates)}",
            )


@dataclass
class DiscriminatorConfig:
    """HiFi-GAN multi-period (MPD) and multi-scale (MSD) discriminators."""

    # jik876/hifi-gan models.py (periods 2,3,5,7,11; 3 scales), unchanged in speech-resynthesis
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    num_scales: int = 3
    width: float = 1.0  # channel multiplier; 1.0 is the published size, tests shrink it


@dataclass
class MelConfig:
    """The log-mel spectrogram of the L1 reconstruction loss and of validation."""

    # speech-resynthesis hubert100_lut.json: n_fft 1024, hop 256, win 1024, 80 mels, fmin 0, fmax_for_loss null
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    num_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None


@dataclass
class TrainConfig:
    """Optimisation, losses, data and bookkeeping of one training run."""

    # speech-resynthesis train.py + hubert100_lut.json: AdamW 2e-4 (0.8, 0.99), decay 0.999/epoch,
    # batch 16, segment 8960 samples, 400k steps, loss = adv + 2 x feature matching + 45 x mel L1
    steps: int = 400_000
    batch_size: int = 16
    segment_size: int = 8960
    learning_rate: float = 2e-4
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    weight_decay: float = 0.01  # torch AdamW default, which the recipe leaves unchanged
    lr_decay: float = 0.999  # per epoch; applied per step as lr_decay ** (1 / steps_per_epoch)
    lambda_fm: float = 2.0
    lambda_mel: float = 45.0
    lambda_duration: float = 1.0  # fairseq dur_prediction_weight
    seed: int = 1234  # jik876/hifi-gan default seed
    # The recipe validates every 1k and checkpoints every 10k steps; checkpoints are cheap here and
    # a killed run should lose little work, so the default is denser.
    checkpoint_every: int = 2000
    validate_every: int = 1000
    log_every: int = 50
    keep_checkpoints: int = 2
    num_validation: int = 8  # held-out utterances for validation mel-L1
    num_samples: int = 2  # of which this many are written as WAV samples at each validation
    max_validation_seconds: float = 10.0  # longer held-out utterances are cut for validation
    amp: bool = True  # bf16 autocast when on a CUDA device; ignored on CPU (fp32)
    peak_normalise: float = 0.95  # speech-resynthesis dataset.py: librosa.util.normalize(x) * 0.95


@dataclass
class VocoderConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    mel: MelConfig = field(default_factory=MelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VocoderConfig:
        return cls(
            generator=_build(GeneratorConfig, data.get("generator", {})),
            discriminator=_build(DiscriminatorConfig, data.get("discriminator", {})),
            mel=_build(MelConfig, data.get("mel", {})),
            train=_build(TrainConfig, data.get("train", {})),
        )


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise BadInputError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    return cls(**{k: _tupled(v) for k, v in data.items()})


def preset(name: str) -> VocoderConfig:
    """Named configurations: `reference` (the published recipe), `small` (CPU smoke runs), `tiny` (tests)."""
    if name == "reference":
        return VocoderConfig()
    if name == "small":
        # a quarter of the channels everywhere: ~16x less compute, for CPU-only smoke runs
        base = VocoderConfig()
        return VocoderConfig(generator=replace(base.generator, upsample_initial_channel=128),
                             discriminator=replace(base.discriminator, width=0.25), train=base.train)
    if name == "tiny":
        base = VocoderConfig()
        return VocoderConfig(
            generator=replace(
                base.generator, unit_dim=16, speaker_dim=8, f0_dim=8, upsample_initial_channel=64,
                resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),), duration_hidden=16,
            ),
            discriminator=replace(base.discriminator, periods=(2, 3), num_scales=2, width=1 / 16),
            mel=replace(base.mel, n_fft=512, win_size=512, hop_size=128, num_mels=40),
            train=replace(base.train, batch_size=2, segment_size=320 * 8, num_validation=2, num_samples=1,
                          checkpoint_every=10, validate_every=10, log_every=5),
        )
    raise BadInputError(f"unknown vocoder preset {name!r}", f"use one of {', '.join(PRESETS)}")


PRESETS = ("reference", "small", "tiny")
