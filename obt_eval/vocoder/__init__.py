"""Unit vocoders: a unit HiFi-GAN per encoder, trained resumably, synthesis of comparable stimuli,
and objective resynthesis metrics against the original recordings.

    from obt_eval.vocoder import preset, train_vocoder, Vocoder, synthesize_units, resynthesis_metrics
"""

from obt_eval.vocoder.checkpoint import codebook_hash
from obt_eval.vocoder.config import PRESETS, VocoderConfig, preset
from obt_eval.vocoder.metrics import compare, resynthesis_metrics, summarise
from obt_eval.vocoder.postprocess import OutputPolicy
from obt_eval.vocoder.synthesis import SynthesisReport, SynthItem, Vocoder, synthesize_units
from obt_eval.vocoder.train import TrainResult, train_vocoder

__all__ = [
    "PRESETS", "OutputPolicy", "SynthItem", "SynthesisReport", "TrainResult", "Vocoder", "VocoderConfig",
    "codebook_hash", "compare", "preset", "resynthesis_metrics", "summarise", "synthesize_units", "train_vocoder",
]
