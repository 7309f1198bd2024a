"""CTC speech recognition (MMS `mms-1b-all` with language adapters, or any CTC checkpoint) and CER/WER.

`SpeechRecognizer` loads `AutoModelForCTC` + `AutoProcessor` by Hub id or local folder. A model whose config
has `adapter_attn_dim` (mms-1b-all) is switched to a language with the two calls MMS documents:
`tokenizer.set_target_lang(lang)` and `model.load_adapter(lang)`. Decoding is greedy CTC (argmax per frame,
repeats collapsed, blanks dropped), as the MMS model cards do. Audio longer than 30 s is recognised in
30 s pieces whose texts are joined with a space (a word cut at a piece boundary can be misrecognised).

Text normalisation before scoring (`normalise_text`): Unicode NFKC, casefold, every character that is not
a letter, combining mark, digit or apostrophe becomes a space (punctuation, symbols, hyphens), runs of
whitespace collapse to one space. CER is the character edit distance over the normalised text, spaces
included, divided by its length; WER the same over words. Corpus-level rates add edits and lengths over
clips (as jiwer does for a list), they do not average per-clip rates.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import torch

from obt_eval.errors import BadInputError
from obt_eval.frames import SAMPLE_RATE
from obt_eval.mms.hub import MMS_LICENCE, load_or_explain, pick_device, revision_of
from obt_eval.mms.languages import accepted_codes, to_iso639_3

DEFAULT_ASR_MODEL = "facebook/mms-1b-all"
CHUNK_SECONDS = 30.0
_APOSTROPHES = {"'": "'", "\u2019": "'", "\u02bc": "'", "\u2018": "'"}


def normalise_text(text: str | None) -> str:
    """The text both sides of an error rate are compared in (see the module docstring)."""
    if not text or (isinstance(text, float) and text != text):
        return ""
    out = []
    for ch in unicodedata.normalize("NFKC", str(text)).casefold():
        ch = _APOSTROPHES.get(ch, ch)
        cat = unicodedata.category(ch)
        out.append(ch if ch == "'" or cat[0] in "LMN" else " ")
    return " ".join("".join(out).split())


def edit_distance(ref: list | str, hyp: list | str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


@dataclass
class ErrorCounts:
    """Edits and reference lengths for characters and words: add them up, then divide."""

    char_edits: int = 0
    chars: int = 0
    word_edits: int = 0
    words: int = 0

    @classmethod
    def of(cls, reference: str | None, hypothesis: str | None) -> ErrorCounts:
        ref, hyp = normalise_text(reference), normalise_text(hypothesis)
        return cls(edit_distance(ref, hyp), len(ref), edit_distance(ref.split(), hyp.split()), len(ref.split()))

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.char_edits + other.char_edits, self.chars + other.chars,
                           self.word_edits + other.word_edits, self.words + other.words)

    @property
    def cer(self) -> float | None:
        return self.char_edits / self.chars if self.chars else None

    @property
    def wer(self) -> float | None:
        return self.word_edits / self.words if self.words else None


def cer(reference: str, hypothesis: str) -> float | None:
    return ErrorCounts.of(reference, hypothesis).cer


def wer(reference: str, hypothesis: str) -> float | None:
    return ErrorCounts.of(reference, hypothesis).wer


def _is_nested_vocab(tokenizer) -> bool:
    vocab = getattr(tokenizer, "vocab", None)
    return isinstance(vocab, dict) and bool(vocab) and all(isinstance(v, dict) for v in vocab.values())


class SpeechRecognizer:
    """A CTC model ready to transcribe 16 kHz audio in one language."""

    def __init__(self, source: str = DEFAULT_ASR_MODEL, lang: str | None = None, *, adapter: str | None = None,
                 revision: str | None = None, device: str | torch.device | None = None):
        from transformers import AutoConfig, AutoModelForCTC, AutoProcessor

        self.source = str(source)
        self.device = pick_device(device)
        config = load_or_explain(AutoConfig.from_pretrained, self.source, "speech recognition model",
                                 revision=revision)
        self.has_adapters = getattr(config, "adapter_attn_dim", None) is not None
        self.lang = to_iso639_3(lang) if lang else None
        if lang and self.lang is None:
            raise BadInputError(f"cannot read the language {lang!r}", "give an ISO 639-3 (por) or 639-1 (pt) code")
        wanted = adapter or self.lang
        try:
            self.processor = load_or_explain(AutoProcessor.from_pretrained, self.source, "speech recognition "
                                             "processor", revision=revision)
        except (TypeError, KeyError):
            # a nested multi-language vocabulary saved without a default language: name one to load it
            self.processor = load_or_explain(AutoProcessor.from_pretrained, self.source, "speech recognition "
                                             "processor", revision=revision, target_lang=wanted)
        tokenizer = self.processor.tokenizer
        self.languages = sorted(tokenizer.vocab) if _is_nested_vocab(tokenizer) else []
        self.model = load_or_explain(AutoModelForCTC.from_pretrained, self.source, "speech recognition model",
                                     revision=revision)
        self.adapter: str | None = None
        if self.has_adapters:
            if not wanted:
                raise BadInputError(f"{self.source} has language adapters and needs a language",
                                    "pass --lang with an ISO 639-3 code (e.g. por)")
            if self.languages and wanted not in self.languages and adapter is None:
                # a macrolanguage and its members are one language (grn Guarani ~ gug Paraguayan Guarani)
                same = sorted(accepted_codes(wanted) & set(self.languages))
                wanted = same[0] if same else wanted
            if self.languages and wanted not in self.languages:
                raise BadInputError(
                    f"{self.source} has no adapter for {wanted!r} ({len(self.languages)} adapters: "
                    f"{', '.join(self.languages[:30])}{'…' if len(self.languages) > 30 else ''})",
                    "pass --adapter with the closest language it has (a related language or the regional lingua "
                    "franca); cer_vs_original (agreement with the ASR of the original recording) stays meaningful",
                )
            if self.languages:
                tokenizer.set_target_lang(wanted)
            try:
                self.model.load_adapter(wanted)
            except OSError as exc:
                raise BadInputError(f"cannot load the {wanted!r} adapter of {self.source}: "
                                    f"{str(exc).splitlines()[0]}",
                                    f"the folder needs adapter.{wanted}.safetensors; pick another --adapter") from exc
            self.adapter = wanted
        elif adapter:
            raise BadInputError(f"{self.source} has no language adapters, so --adapter {adapter} cannot be used",
                                "drop --adapter: this model always transcribes its one language")
        self.model.eval().to(self.device)
        self.revision = revision_of(self.source, config, revision)
        self.licence = MMS_LICENCE if "facebook/mms" in self.source else ""

    def describe(self) -> dict:
        return {"model": self.source, "revision": self.revision, "adapter": self.adapter,
                "adapters_available": len(self.languages), "licence": self.licence}

    @torch.inference_mode()
    def transcribe(self, wave: np.ndarray) -> str:
        """Greedy CTC transcript of one 16 kHz mono waveform."""
        wave = np.asarray(wave, dtype=np.float32)
        step = int(CHUNK_SECONDS * SAMPLE_RATE)
        texts = []
        for start in range(0, max(len(wave), 1), step):
            piece = wave[start:start + step]
            if piece.size < 400:  # shorter than one wav2vec2 frame
                if start == 0:
                    piece = np.pad(piece, (0, 400 - piece.size))
                else:
                    continue
            inputs = self.processor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            logits = self.model(inputs["input_values"].to(self.device)).logits
            ids = torch.argmax(logits, dim=-1)[0].cpu()
            texts.append(self.processor.decode(ids, skip_special_tokens=True).strip())
        return " ".join(t for t in texts if t)
