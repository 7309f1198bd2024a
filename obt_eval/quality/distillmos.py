"""Distill-MOS (Stahl & Gamper, Interspeech 2025): a small CNN-transformer MOS predictor distilled from
XLS-R-based SQA models, with its weights (`weights/distill_mos_v7.pt`, 16.9 MB) in the `distillmos` wheel.

`distillmos` 0.9.1 lists torchaudio as a dependency and its module imports it at the top, but the model
itself (`ConvTransformerSQAModel`: STFT by torch, no torchaudio call) does not use it; only its file-list
helper reads audio with torchaudio. torchaudio from PyPI does not load against this project's torch, so
install it without dependencies (`pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0`) and this
module imports the model with a placeholder `torchaudio` module present only during that import. Audio
is read and resampled to 16 kHz by obt-eval (soundfile + soxr) instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import threading
import types

import numpy as np
import torch

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.integrity import file_checksum

LICENCE = "MIT (distillmos, Microsoft)"
_import_lock = threading.Lock()


def _model_module():
    """`distillmos.sqa`, imported without torchaudio when torchaudio is missing or unusable."""
    with _import_lock:
        try:
            return importlib.import_module("distillmos.sqa")
        except ImportError as exc:
            if "distillmos" in str(exc) or "xls_r_sqa" in str(exc):
                raise NotFoundError(f"Distill-MOS is not installed ({exc})",
                                    "pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0") from exc
        except OSError:  # a torchaudio build that does not match torch fails with OSError at import
            pass
        for name in [n for n in sys.modules if n == "distillmos.sqa" or n.startswith("torchaudio")]:
            del sys.modules[name]
        placeholder = types.ModuleType("torchaudio")
        sys.modules["torchaudio"] = placeholder
        try:
            return importlib.import_module("distillmos.sqa")
        except ImportError as exc:
            raise NotFoundError(f"Distill-MOS cannot be imported: {exc}",
                                "pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0") from exc
        finally:
            # never leave the placeholder behind: other code tests for torchaudio with find_spec
            if sys.modules.get("torchaudio") is placeholder:
                del sys.modules["torchaudio"]


class DistillMos:
    """Distill-MOS v7 on 16 kHz mono float audio; one score in 1..5."""

    name = "distillmos"
    columns = ("distillmos",)

    def __init__(self, device: str | torch.device | None = None):
        sqa = _model_module()
        self.weights_path = sqa.DEFAULT_WEIGHTS_CHKPT
        if not os.path.exists(self.weights_path):
            raise NotFoundError(f"the Distill-MOS weights are missing ({self.weights_path})",
                                "reinstall: pip install --force-reinstall --no-deps distillmos==0.9.1")
        model = sqa.ConvTransformerSQAModel(load_weights=False)  # its own loader prints to stdout
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        self.device = torch.device(device or "cpu")
        self.model = model.eval().to(self.device)

    def describe(self) -> dict:
        return {"model": "Distill-MOS v7 (distillmos ConvTransformerSQAModel)",
                "revision": f"distillmos {importlib.metadata.version('distillmos')}",
                "files": {os.path.basename(self.weights_path): file_checksum(self.weights_path)},
                "licence": LICENCE}

    @torch.inference_mode()
    def score(self, wave: np.ndarray) -> dict[str, float]:
        audio = np.asarray(wave, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all():
            raise BadInputError("Distill-MOS needs a non-empty, finite, mono waveform")
        x = torch.from_numpy(audio).unsqueeze(0).to(self.device)
        return {"distillmos": float(self.model(x).reshape(-1)[0])}
