"""Speech encoders by name: HF wav2vec2-family checkpoints and two weightless baselines (mfcc, logmel)."""

from obt_eval.encoders.base import Encoder
from obt_eval.encoders.registry import ENCODERS, EncoderSpec, load_encoder, resolve_encoder

__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "load_encoder", "resolve_encoder"]
