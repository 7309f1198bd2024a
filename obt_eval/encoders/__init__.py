"""Speech encoders by name: wav2vec2 family, w2v-BERT 2.0, HuBERT, XEUS (ESPnet), plugins, weightless baselines."""

from obt_eval.encoders.base import Encoder, FrameGrid
from obt_eval.encoders.registry import (
    ENCODERS,
    EncoderSpec,
    load_encoder,
    plugin_encoders,
    registered_encoders,
    resolve_encoder,
)

__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "FrameGrid", "load_encoder", "plugin_encoders", "registered_encoders",
           "resolve_encoder"]
