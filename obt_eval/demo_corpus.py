"""A small corpus synthesized offline with espeak-ng: Brazilian Portuguese and Guarani, several
voices, exact phone alignments. New users try the pipeline on it and the tests use it.

Formant synthesis makes ABX far easier than on real speech (see reference/metrics-and-data.md
§3.1): use it to exercise code paths and sanity checks, never to rank encoders.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from obt_eval.alignments import PhoneInterval, item_file_text, items_from_intervals, textgrid_text
from obt_eval.audio import resample
from obt_eval.errors import BadInputError
from obt_eval.espeak import MAX_INSTANCES, Synthesis, synthesize
from obt_eval.frames import SAMPLE_RATE

# Short, everyday and scriptural sentences (the project serves oral Bible translation).
SENTENCES: dict[str, tuple[str, ...]] = {
    "pt-br": (
        "Bom dia, meu amigo. Tudo bem com você?",
        "O sol nasceu cedo e o céu está azul.",
        "A menina comprou pão e leite na padaria.",
        "Meu irmão trabalha numa fazenda perto do rio.",
        "Hoje à noite vamos jantar na casa da vovó.",
        "No princípio era o Verbo, e o Verbo estava com Deus.",
        "O cachorro correu atrás da bola no quintal.",
        "Choveu muito ontem e a rua ficou alagada.",
        "Você pode me ajudar a carregar estas caixas?",
        "As crianças cantam na escola todas as manhãs.",
        "O barco desceu o rio devagar até a aldeia.",
        "Minha mãe faz um bolo de milho delicioso.",
        "Precisamos plantar mandioca antes da chuva.",
        "O pescador voltou com muitos peixes grandes.",
        "Amanhã cedo vamos viajar para o litoral.",
        "A festa começou depois do pôr do sol.",
        "Ele leu a carta em voz alta para todos.",
        "Nós ouvimos os pássaros cantando na floresta.",
        "O médico chegou de barco na segunda-feira.",
        "Bem-aventurados os pacíficos, porque serão chamados filhos de Deus.",
        "A professora explicou a lição com paciência.",
        "Quero um copo de água gelada, por favor.",
        "O vento forte derrubou a árvore velha.",
        "Eles construíram uma casa nova de madeira.",
        "Onde fica a estação de ônibus mais próxima?",
        "A avó contou histórias antigas ao redor do fogo.",
        "O menino aprendeu a nadar no lago.",
        "Vamos ler juntos o primeiro capítulo do livro.",
        "A colheita deste ano foi muito boa.",
        "Obrigado pela visita, volte sempre.",
    ),
    "gn": (
        "Mba'éichapa nde ko'ẽ? Iporã, ha nde?",
        "Mba'éichapa nde réra? Che réra Maria.",
        "Aguyje ndéve, che angirũ.",
        "Ko ára haku eterei.",
        "Che ahayhu che sy ha che ru.",
        "Jajotopata ko'ẽrõ pyhareve.",
        "Che aiko Paraguaýpe.",
        "Ore Ru yvágape reikóva, toñemomba'eguasu nde réra.",
        "Ñepyrũme oĩ va'ekue Ñe'ẽ.",
        "Ha Ñe'ẽ oĩ va'ekue Tupã ndive.",
        "Aipota y ro'ysã.",
        "Che róga tuicha ha iporã.",
        "Pe jagua ipochy.",
        "Mbarakaja oke hína.",
        "Ñandejára nde rovasa.",
        "Che sy ombojy chipa.",
        "Ahecha peteĩ guyra.",
        "Mokõi kuña oguata tape rupi.",
        "Mboy ary reguereko?",
        "Ko'ãga aháta che rógape.",
        "Ñandejára ñanderayhu.",
        "Mitã okaru hína.",
        "Jaha jakaru.",
        "Ndaipóri mba'eve.",
        "Eju ko'ápe.",
        "Avañe'ẽ ha'e ñane ñe'ẽ.",
        "Che ndaikatúi aha ko'ẽrõ.",
        "Kuarahy osẽma.",
        "Che ru oho kokuépe.",
        "Ore romba'apo kokuépe.",
    ),
}
LANGUAGE_NAMES = {"pt-br": "Brazilian Portuguese", "gn": "Guarani"}
# espeak voice variants used as speakers, in order: alternate gender and source model so that
# even 2-3 speakers differ audibly (reference/metrics-and-data.md §3.1).
VARIANTS = ("m3", "f3", "klatt2", "Andrea", "m1", "f2", "klatt4", "Diogo")
# Stress is suprasegmental: 'ˈe' and 'e' are one phone category for ABX and PNMI.
STRESS_MARKS = "ˈˌ"
# espeak's pause phonemes ("_:", "_", "_|"…) leave a gap; "_!" is a glottal closure (Guarani puso).
GLOTTAL_STOP = "_!"


@dataclass(frozen=True)
class DemoConfig:
    """Defaults give ~5 minutes of audio; per-utterance jitter ranges follow reference §3.1 (narrowed)."""

    languages: tuple[str, ...] = ("pt-br", "gn")
    speakers_per_language: int = 3
    sentences_per_language: int = 24
    seed: int = 0
    rate_wpm: tuple[int, int] = (140, 200)  # espeak default 175
    pitch: tuple[int, int] = (35, 65)  # espeak 0-100, default 50
    pad_seconds: float = 0.1  # silence before and after speech (ABX needs >= 25-30 ms at the end)
    noise_dbfs: float | None = -60.0  # white noise RMS, so nothing is digital silence


@dataclass
class DemoCorpusInfo:
    """What make_demo_corpus wrote; `to_dict` is the CLI's --json summary."""

    out_dir: Path
    wav_dir: Path
    metadata_path: Path
    textgrid_dir: Path
    item_path: Path
    num_utterances: int
    total_seconds: float
    languages: list[str]
    speakers: list[str]
    num_phones: int
    num_items: int
    phone_inventory: list[str] = field(default_factory=list)

    @property
    def ingest_command(self) -> str:
        return (
            f"obt-eval ingest {self.wav_dir} --name demo --metadata {self.metadata_path} "
            f"--alignments {self.textgrid_dir}"
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out = {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
        out["ingest_command"] = self.ingest_command
        return out


@dataclass
class _Utterance:
    uid: str
    language: str
    speaker: str
    voice: str
    sentence_index: int
    text: str


def _plan(config: DemoConfig) -> list[_Utterance]:
    for lang in config.languages:
        if lang not in SENTENCES:
            raise BadInputError(f"no demo sentences for language {lang!r}", f"choose from {sorted(SENTENCES)}")
    limit = min(len(s) for s in SENTENCES.values())
    if not 1 <= config.sentences_per_language <= limit:
        raise BadInputError(f"sentences per language must be 1..{limit}, got {config.sentences_per_language}")
    if not 1 <= config.speakers_per_language <= len(VARIANTS):
        raise BadInputError(f"speakers per language must be 1..{len(VARIANTS)}, got {config.speakers_per_language}")
    plan = []
    for lang in config.languages:
        for variant in VARIANTS[: config.speakers_per_language]:
            voice = f"{lang}+{variant}"
            for i in range(config.sentences_per_language):
                plan.append(_Utterance(f"{lang}_{variant}_{i:03d}", lang, voice, voice, i, SENTENCES[lang][i]))
    return plan


def _split(index: int, total: int) -> str:
    """Split by sentence, so one text never sits in two splits: ~80/10/10, the last sentences held out."""
    held = max(1, round(total * 0.1)) if total >= 3 else 0
    if index >= total - held:
        return "test"
    if index >= total - 2 * held:
        return "dev"
    return "train"


def _phones(syn: Synthesis, offset: float) -> list[tuple[float, float, str, int]]:
    """Phone intervals (onset, offset, label, word position) in seconds from espeak phoneme starts.

    A phone lasts until the next event. Pauses leave a gap; markers such as ';' (a voiced hiatus
    transition) carry sound, so their time extends the phone before them.
    """
    sr = syn.sample_rate
    bounds = [e.sample for e in syn.events[1:]] + [len(syn.audio)]
    out: list[tuple[float, float, str, int]] = []
    prev_end = -1
    for ev, end in zip(syn.events, bounds, strict=True):
        if end <= ev.sample:
            continue
        if ev.mnemonic == GLOTTAL_STOP:
            label = "ʔ"
        elif ev.mnemonic.startswith("_"):
            prev_end = -1
            continue
        else:
            label = "".join(ch for ch in ev.ipa if ch not in STRESS_MARKS).strip()
        if not label:
            if out and prev_end == ev.sample:
                a, _, p, w = out[-1]
                out[-1] = (a, offset + end / sr, p, w)
                prev_end = end
            continue
        out.append((offset + ev.sample / sr, offset + end / sr, label, ev.word_position))
        prev_end = end
    return out


def _words(text: str, phones: list[tuple[float, float, str, int]]) -> list[tuple[float, float, str]]:
    """Word intervals: each whitespace token spans the phones espeak attributed to it."""
    spans, start = [], 0
    for token in text.split():
        begin = text.index(token, start)
        spans.append((begin, begin + len(token), token))
        start = begin + len(token)
    words: dict[int, list[float]] = {}
    for a, b, _, position in phones:
        idx = next((k for k, (s, e, _) in enumerate(spans) if s <= position - 1 < e), None)
        if idx is None:
            continue
        span = words.setdefault(idx, [a, b])
        span[0], span[1] = min(span[0], a), max(span[1], b)
    out = []
    for idx in sorted(words):
        label = spans[idx][2].strip(".,;:!?¡¿\"«»()")
        out.append((words[idx][0], words[idx][1], label or spans[idx][2]))
    # espeak may split a token (e.g. at an apostrophe); keep word intervals non-overlapping.
    for k in range(1, len(out)):
        if out[k][0] < out[k - 1][1]:
            out[k] = (out[k - 1][1], out[k][1], out[k][2])
    return [w for w in out if w[1] > w[0]]


def _render(utt: _Utterance, config: DemoConfig) -> tuple[np.ndarray, list[PhoneInterval], list]:
    # One RNG per utterance keyed by its identity: an utterance sounds the same whatever else is built.
    rng = np.random.default_rng([config.seed, zlib.crc32(utt.uid.encode())])
    rate = int(rng.integers(config.rate_wpm[0], config.rate_wpm[1] + 1))
    pitch = int(rng.integers(config.pitch[0], config.pitch[1] + 1))
    syn = synthesize(utt.text, utt.voice, rate=rate, pitch=pitch, seed=int(rng.integers(1, 2**31 - 1)))
    if syn.audio.size == 0 or not syn.events:
        raise BadInputError(f"espeak produced no audio for {utt.uid} ({utt.text!r})")
    speech = resample(syn.audio.astype(np.float32) / 32768.0, syn.sample_rate, SAMPLE_RATE)
    pad = np.zeros(int(round(config.pad_seconds * SAMPLE_RATE)), np.float32)
    wave = np.concatenate([pad, speech, pad])
    if config.noise_dbfs is not None:
        wave = wave + rng.normal(0.0, 10 ** (config.noise_dbfs / 20), wave.size).astype(np.float32)
    wave = np.clip(wave, -1.0, 1.0)
    phones = _phones(syn, config.pad_seconds)
    words = _words(utt.text, phones)
    intervals = [PhoneInterval(utt.uid, a, b, p) for a, b, p, _ in phones]
    return wave, intervals, words


def _stage(out_dir: Path) -> Path:
    """A hidden sibling folder to build in; the corpus appears under `out_dir` only when complete."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"{out_dir} is a file", "pass a folder path for the demo corpus")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "metadata.csv").exists():
        raise BadInputError(f"{out_dir} is not empty and is not a demo corpus", "pass a new or empty folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the published corpus is an ordinary folder
    (staging / "wavs").mkdir()
    (staging / "textgrids").mkdir()
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Rename the finished build onto `out_dir`, replacing an older demo corpus there."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "corpus")
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out_dir.is_dir():
            out_dir.rmdir()
        os.replace(staging, out_dir)


def _build_one(utt: _Utterance, config: DemoConfig, staging: Path) -> tuple[tuple, list[PhoneInterval], float]:
    wave, intervals, words = _render(utt, config)
    duration = wave.size / SAMPLE_RATE
    # Plain writes are safe here: nothing in the staging folder is visible until _publish.
    buffer = io.BytesIO()
    sf.write(buffer, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    (staging / "wavs" / f"{utt.uid}.wav").write_bytes(buffer.getvalue())
    text = textgrid_text(intervals, duration, words=words)
    (staging / "textgrids" / f"{utt.uid}.TextGrid").write_text(text, encoding="utf-8")
    split = _split(utt.sentence_index, config.sentences_per_language)
    return (utt.uid, utt.speaker, utt.language, split, utt.text), intervals, duration


def _readme(config: DemoConfig, info: DemoCorpusInfo) -> str:
    langs = ", ".join(f"{LANGUAGE_NAMES.get(lang, lang)} ({lang})" for lang in config.languages)
    return f"""obt-eval demo corpus
====================

Synthetic speech made by `obt-eval demo-corpus` with espeak-ng (no download): {langs};
{info.num_utterances} utterances, {info.total_seconds:.1f} s, speakers = espeak voice variants
({", ".join(info.speakers)}), rate and pitch jittered per utterance (seed {config.seed}).

wavs/<id>.wav          16 kHz mono PCM-16, {config.pad_seconds:.2f} s silence (+ low noise) before and after speech
metadata.csv           utterance_id,speaker,language,split,transcript (split by sentence: train/dev/test)
textgrids/<id>.TextGrid  Praat TextGrids: 'words' and 'phones' tiers (IPA, stress marks removed)
demo.item              ZeroSpeech item file (#file onset offset #phone prev-phone next-phone speaker)

Phone times come from espeak-ng's phoneme events, so they are exact for this audio.
Formant synthesis is far easier than real speech: use this corpus to try and test the pipeline,
not to rank encoders.

Next step (run in this folder):
  obt-eval ingest wavs --name demo --metadata metadata.csv --alignments textgrids

Licence: espeak-ng is GPL-3.0-or-later (https://github.com/espeak-ng/espeak-ng); the audio is
generated output of that program. The sentences were written for obt-eval.
"""


def make_demo_corpus(
    out_dir: str | os.PathLike,
    *,
    languages: tuple[str, ...] | list[str] = ("pt-br", "gn"),
    speakers_per_language: int = 3,
    sentences_per_language: int = DemoConfig.sentences_per_language,
    seed: int = 0,
    noise_dbfs: float | None = DemoConfig.noise_dbfs,
    progress: bool = False,
) -> DemoCorpusInfo:
    """Synthesize the demo corpus into `out_dir` (wavs/, metadata.csv, textgrids/, demo.item, README.txt).

    Deterministic: the same arguments give byte-identical files. Every sentence is spoken by every
    speaker of its language, so across-speaker ABX has matching contexts. The corpus is built in a
    hidden sibling folder and renamed into place when complete, so a killed build never leaves a
    half-written corpus that looks finished (an older demo corpus in `out_dir` is replaced).
    """
    config = DemoConfig(
        languages=tuple(languages),
        speakers_per_language=speakers_per_language,
        sentences_per_language=sentences_per_language,
        seed=seed,
        noise_dbfs=noise_dbfs,
    )
    plan = _plan(config)
    out_dir = Path(out_dir)
    staging = _stage(out_dir)
    try:
        rows, all_intervals, total = [], [], 0.0
        # espeak runs in per-thread library instances and releases the GIL, so threads use all cores.
        with ThreadPoolExecutor(max_workers=MAX_INSTANCES) as pool:
            results = pool.map(lambda u: _build_one(u, config, staging), plan)
            for row, intervals, duration in tqdm(
                results, total=len(plan), desc="demo corpus", unit="utt", disable=not progress
            ):
                rows.append(row)
                all_intervals += intervals
                total += duration
        metadata = pd.DataFrame(rows, columns=["utterance_id", "speaker", "language", "split", "transcript"])
        (staging / "metadata.csv").write_text(metadata.to_csv(index=False, lineterminator="\n"), encoding="utf-8")
        items = items_from_intervals(all_intervals, {u.uid: u.speaker for u in plan})
        (staging / "demo.item").write_text(item_file_text(items), encoding="utf-8")
        info = DemoCorpusInfo(
            out_dir=out_dir,
            wav_dir=out_dir / "wavs",
            metadata_path=out_dir / "metadata.csv",
            textgrid_dir=out_dir / "textgrids",
            item_path=out_dir / "demo.item",
            num_utterances=len(plan),
            total_seconds=round(total, 3),
            languages=list(config.languages),
            speakers=sorted({u.speaker for u in plan}),
            num_phones=len(all_intervals),
            num_items=len(items),
            phone_inventory=sorted({iv.phone for iv in all_intervals}),
        )
        (staging / "README.txt").write_text(_readme(config, info), encoding="utf-8")
        _publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info
