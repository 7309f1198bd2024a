"""DNSMOS P.835 (SIG, BAK, OVRL) and P.808 from the ONNX models that ship in the `speechmos` wheel.

Microsoft's reference scoring (DNS-Challenge `DNSMOS/dnsmos_local.py`, which speechmos copies): a clip
shorter than 9.01 s is repeated until it is that long, the models score 9.01 s windows every `hop_seconds`
(1 s), the raw P.835 outputs go through the published polynomial calibration, and the windows are
averaged. The loop is ours only so the hop can be set for hour-long recordings; with the default hop the
scores equal `speechmos.dnsmos.run` (a test checks it).

DNSMOS was trained to judge noise suppression, so it is a sanity signal for vocoder output, not a MOS
predictor for it; on field recordings its BAK (background noise) is what it is best at.
"""

from __future__ import annotations

import importlib.metadata
import os

import numpy as np

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.frames import SAMPLE_RATE
from obt_eval.integrity import file_checksum

INPUT_SECONDS = 9.01
LICENCE = "MIT (speechmos, Microsoft)"


def _speechmos_files() -> tuple[str, str, str]:
    try:
        import speechmos
    except ImportError as exc:
        raise NotFoundError("DNSMOS needs the `speechmos` package (its ONNX models ship in the wheel)",
                            "pip install speechmos onnxruntime") from exc
    root = os.path.dirname(os.path.abspath(speechmos.__file__))
    primary = os.path.join(root, "dnsmos_models", "sig_bak_ovr.onnx")
    p808 = os.path.join(root, "dnsmos_models", "model_v8.onnx")
    return root, primary, p808


class Dnsmos:
    """DNSMOS P.835 + P.808 on 16 kHz mono float audio."""

    name = "dnsmos"
    columns = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")

    def __init__(self, hop_seconds: float = 1.0, threads: int | None = None):
        import onnxruntime as ort
        from speechmos.dnsmos import DNSMOS

        if hop_seconds <= 0:
            raise BadInputError(f"hop {hop_seconds} s must be positive", "use 1.0 (the reference) or more")
        _, self.primary_path, self.p808_path = _speechmos_files()
        self.hop_seconds = float(hop_seconds)
        self._model = DNSMOS(self.primary_path, self.p808_path)
        if threads:  # on a shared machine one thread each is faster than onnxruntime's all-cores default
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
            self._model.onnx_sess = ort.InferenceSession(self.primary_path, options,
                                                         providers=["CPUExecutionProvider"])
            self._model.p808_onnx_sess = ort.InferenceSession(self.p808_path, options,
                                                              providers=["CPUExecutionProvider"])

    def describe(self) -> dict:
        return {"model": "DNSMOS P.835 sig_bak_ovr.onnx + P.808 model_v8.onnx (speechmos)",
                "revision": f"speechmos {importlib.metadata.version('speechmos')}",
                "files": {os.path.basename(p): file_checksum(p) for p in (self.primary_path, self.p808_path)},
                "hop_seconds": self.hop_seconds, "licence": LICENCE}

    def score(self, wave: np.ndarray) -> dict[str, float]:
        audio = np.asarray(wave, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all():
            raise BadInputError("DNSMOS needs a non-empty, finite, mono waveform")
        audio = np.clip(audio, -1.0, 1.0)
        fs = SAMPLE_RATE
        window = int(INPUT_SECONDS * fs)
        while len(audio) < window:  # the reference tiles short clips by doubling
            audio = np.append(audio, audio)
        hop = int(self.hop_seconds * fs)
        # the reference's count of windows (whole seconds of audio), generalised to other hops
        count = int((np.floor(len(audio) / fs) - INPUT_SECONDS) / self.hop_seconds) + 1
        starts = [i * hop for i in range(max(count, 1))]
        sig, bak, ovr, p808 = [], [], [], []
        for start in starts:
            segment = audio[start:start + window]
            if len(segment) < window:
                continue
            mel = self._model.audio_melspec(audio=segment[:-160]).astype("float32")[np.newaxis]
            p808.append(float(self._model.p808_onnx_sess.run(None, {"input_1": mel})[0][0][0]))
            raw = self._model.onnx_sess.run(None, {"input_1": segment[np.newaxis].astype("float32")})[0][0]
            s, b, o = self._model.get_polyfit_val(raw[0], raw[1], raw[2], False)
            sig.append(float(s))
            bak.append(float(b))
            ovr.append(float(o))
        return {"dnsmos_sig": float(np.mean(sig)), "dnsmos_bak": float(np.mean(bak)),
                "dnsmos_ovrl": float(np.mean(ovr)), "dnsmos_p808": float(np.mean(p808))}
