"""espeak-ng through its C API (ctypes): audio plus exact phoneme start times, with no download.

The `espeakng-loader` wheel bundles the library and voices. No Python binding exposes espeak's
phoneme events, which give the sample where each phoneme starts; that is what makes the demo
corpus's alignments exact. espeak-ng is GPL-3.0-or-later; we only call it, the audio is generated.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from obt_eval.errors import BadInputError, ObtEvalError

# speak_lib.h constants (espeak-ng/espeak-ng src/include/espeak-ng/speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class PhonemeEvent:
    """Start of one espeak phoneme (or pause/marker) at espeak's native sample rate."""

    sample: int
    ipa: str  # IPA name; empty for pauses and markers
    mnemonic: str  # espeak's ASCII name: "_:" / "_" pauses, "_!" glottal stop, ";" syllable marker…
    word_position: int  # 1-based character position (in the text) of the word it belongs to; 0 if none


@dataclass(frozen=True)
class Synthesis:
    audio: np.ndarray  # int16 mono
    sample_rate: int
    events: list[PhonemeEvent]


# The C library keeps its state in globals and is not thread-safe. Each thread therefore borrows
# its own private copy of the .so (a separate file is a separate instance for the dynamic loader);
# nobody else opens these copies, so dlclose really unloads them (see `synthesize`).
MAX_INSTANCES = max(1, min(4, os.cpu_count() or 1))
_POOL: queue.Queue[Path] = queue.Queue()
_POOL_LOCK = threading.Lock()
_created = 0
_folder: Path | None = None


def _library_files() -> tuple[Path, Path]:
    try:
        import espeakng_loader
    except ImportError as exc:
        raise ObtEvalError("espeak-ng is not available", "pip install espeakng-loader") from exc
    lib = Path(espeakng_loader.get_library_path())
    data = Path(espeakng_loader.get_data_path())
    return lib, data.parent  # espeak wants the folder that *contains* espeak-ng-data


def _borrow() -> Path:
    """A private copy of the library for this thread; blocks when MAX_INSTANCES are busy."""
    global _created, _folder
    with _POOL_LOCK:
        if _POOL.empty() and _created < MAX_INSTANCES:
            lib, _ = _library_files()
            if _folder is None:
                _folder = Path(tempfile.mkdtemp(prefix="obt-eval-espeak-"))
                atexit.register(shutil.rmtree, _folder, True)
            copy = _folder / f"{_created}-{lib.name}"
            shutil.copyfile(lib, copy)
            _created += 1
            return copy
    return _POOL.get()


def _run_once(
    library: Path, text: bytes, voice: str, ipa: bool, params: dict[int, int], seed: int
) -> tuple[np.ndarray, list]:
    _, data_parent = _library_files()
    chunks: list[np.ndarray] = []
    events: list[tuple[int, int, int, bytes]] = []

    def callback(wav, num_samples, event_ptr):  # called from inside espeak_Synth (same thread)
        if num_samples > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        i = 0
        while event_ptr[i].type != _EVENT_LIST_TERMINATED:
            ev = event_ptr[i]
            if ev.type == _EVENT_PHONEME:
                events.append((_EVENT_PHONEME, ev.sample, ev.text_position, bytes(ev.id.string)))
            elif ev.type == _EVENT_WORD:
                events.append((_EVENT_WORD, ev.sample, ev.text_position, b""))
            i += 1
        return 0

    c_callback = _CALLBACK(callback)
    lib = ctypes.CDLL(str(library))
    try:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        options = _INIT_DONT_EXIT | _INIT_PHONEME_EVENTS | (_INIT_PHONEME_IPA if ipa else 0)
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_parent).encode(), options)
        if sample_rate <= 0:
            raise ObtEvalError(f"espeak-ng failed to initialise (data in {data_parent})", "reinstall espeakng-loader")
        lib.espeak_SetSynthCallback(c_callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise BadInputError(f"espeak-ng has no voice {voice!r}", "use a language code such as 'pt-br' or 'gn'")
        for param, value in params.items():
            lib.espeak_SetParameter(param, int(value), 0)
        lib.espeak_ng_SetRandSeed(seed)
        status = lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        lib.espeak_Terminate()
        if status != 0:
            raise ObtEvalError(f"espeak-ng could not synthesize {text[:40]!r} (status {status})")
    finally:
        handle = lib._handle
        del lib
        _ctypes.dlclose(handle)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return audio, [sample_rate, *events]


def synthesize(
    text: str,
    voice: str,
    *,
    rate: int | None = None,
    pitch: int | None = None,
    pitch_range: int | None = None,
    seed: int = 0,
) -> Synthesis:
    """Speak `text` with espeak voice `voice` (e.g. ``"pt-br+f3"``); audio and phoneme start samples.

    Same inputs give the same bytes. espeak keeps synthesis state in static variables (pitch
    flutter phase, wave generator) that espeak_Terminate does not reset, so each call loads a fresh
    private copy of the library and unloads it afterwards (~8 ms). Thread-safe: concurrent calls
    use separate copies. Two passes run per call: the IPA
    pass names the phonemes, the ASCII pass tells pauses ("_:") from markers (";"), which are both
    empty in IPA.
    """
    wanted = ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range))
    params = {k: v for k, v in wanted if v is not None}
    data = text.encode("utf-8")
    library = _borrow()
    try:
        audio, ipa_events = _run_once(library, data, voice, True, params, seed)
        audio_ascii, ascii_events = _run_once(library, data, voice, False, params, seed)
    finally:
        _POOL.put(library)
    sample_rate = ipa_events.pop(0)
    ascii_events.pop(0)
    if len(audio) != len(audio_ascii) or [e[:3] for e in ipa_events] != [e[:3] for e in ascii_events]:
        raise ObtEvalError("espeak-ng gave different timings in its two passes; cannot align phonemes exactly")
    out: list[PhonemeEvent] = []
    word_position = 0
    for (kind, sample, _pos, ipa_name), (_, _, _, ascii_name) in zip(ipa_events, ascii_events, strict=True):
        if kind == _EVENT_WORD:
            word_position = _pos
            continue
        out.append(
            PhonemeEvent(
                sample=int(sample),
                ipa=ipa_name.rstrip(b"\x00").decode("utf-8", "replace"),
                mnemonic=ascii_name.rstrip(b"\x00").decode("ascii", "replace"),
                word_position=word_position,
            )
        )
    return Synthesis(audio=audio, sample_rate=int(sample_rate), events=out)
