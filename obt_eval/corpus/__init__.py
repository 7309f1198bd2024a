"""Corpora: ingest a folder of recordings into a manifest of canonical 16 kHz mono audio."""

from obt_eval.corpus.manifest import Corpus

__all__ = ["Corpus"]
