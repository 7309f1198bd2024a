"""Study settings: the protocol raters see (frozen into each study) and the design, loudness and anchor recipes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Naturalness labels as in most TTS MOS tests (cf. reference/listening-tests.md §3.1; store them, since
# Kirkland et al. 2023 showed wording and labels change MOS).
NATURALNESS_LABELS = {
    5: "Excellent - completely natural speech",
    4: "Good - mostly natural speech",
    3: "Fair - equally natural and unnatural speech",
    2: "Poor - mostly unnatural speech",
    1: "Bad - completely unnatural speech",
}


@dataclass(frozen=True)
class Protocol:
    """What a rater is asked and how, snapshotted into the study when it is created."""

    question: str = "How natural does this recording sound?"
    scale_labels: dict[int, str] = field(default_factory=lambda: dict(NATURALNESS_LABELS))
    preference_question: str | None = "Which recording sounds more natural?"
    preference_options: tuple[str, ...] = ("A", "B", "none")
    preference_required: bool = False
    instructions: str = (
        "Use headphones in a quiet place. Play both recordings A and B to the end, then rate how natural "
        "each one sounds on the 1-5 scale. The recordings come in random order; judge each on its own merits."
    )
    # Named as it is: rating two clips side by side is a paired-presentation MOS, not ACR (§3.1).
    test_type: str = "paired-presentation MOS (1-5 naturalness) with optional A/B preference"
    min_listen_fraction: float = 0.95
    version: str = "1"

    @property
    def scale(self) -> tuple[int, int]:
        return min(self.scale_labels), max(self.scale_labels)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scale_labels"] = {str(k): v for k, v in self.scale_labels.items()}
        data["preference_options"] = list(self.preference_options)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        data = dict(data)
        data["scale_labels"] = {int(k): v for k, v in data.get("scale_labels", NATURALNESS_LABELS).items()}
        data["preference_options"] = tuple(data.get("preference_options", ("A", "B", "none")))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DesignConfig:
    """Trial design; P.808 toolkit defaults: 10 votes per file, 10 items + 1 gold + 1 trap per session."""

    target_ratings: int = 10
    trials_per_block: int = 10
    attention_per_block: int = 1
    repeats_per_block: int = 1
    include_reference_in_pairs: bool = True
    max_blocks_per_rater: int | None = None
    seed: int | None = None


# The most gain a clip may get on its way to the loudness target, for synthesized stimuli
# (obt_eval.vocoder.postprocess.OutputPolicy) and for every clip of a study alike: a -53 LUFS clip still
# reaches -23 LUFS; a quieter one is near-silence (an untrained or broken vocoder, a wrong file), and
# boosting it by 40 dB would play its noise floor to raters.
MAX_GAIN_DB = 30.0


@dataclass(frozen=True)
class LoudnessConfig:
    """One integrated-loudness target for every clip (EBU R128, -23 LUFS), never above -1 dBFS peak.

    A clip that is silent, or would need more than ``max_gain_db`` to reach ``target_lufs``, is refused.
    """

    target_lufs: float = -23.0
    max_peak_dbfs: float = -1.0
    floor_lufs: float = -30.0
    max_gain_db: float = MAX_GAIN_DB


@dataclass(frozen=True)
class AnchorConfig:
    """Degraded anchor: 3.5 kHz low-pass (BS.1534 / webMUSHRA createAnchor35) plus white noise."""

    lowpass_hz: float = 3500.0
    snr_db: float = 10.0


@dataclass(frozen=True)
class PaddingConfig:
    """One frame for every clip of an utterance, so length, silence and envelope never tell system or trial kind.

    Vocoders leave their own padding (HiFi-GAN runs often start with digital silence; frame rounding changes
    the length) and natural segments carry room tone at their ends. Every clip is therefore trimmed by the
    same energy rule, faded in and out, and laid on one low-level noise floor in a common length per
    utterance (no digital silence anywhere); each serve draws the padding before the sound. Serving
    (obt_eval.study.serving) does not know the study and uses these defaults; with other lead bounds it
    still never cuts a sound, it only moves it less freely.
    """

    trim_top_db: float = 40.0  # ends quieter than the loudest 5 ms frame by this much are trimmed (librosa-style)
    trim_margin_seconds: float = 0.02  # kept beyond the first / last frame above the threshold
    fade_seconds: float = 0.01  # raised-cosine fade at the trimmed ends
    lead_min_seconds: float = 0.08  # padding before the sound: drawn uniformly per serve from [min, max]
    lead_max_seconds: float = 0.16
    tail_min_seconds: float = 0.08  # padding after the longest version of the utterance
    noise_floor_dbfs: float = -66.0  # RMS of the white noise floor under every clip (inaudible under speech)
