"""UTMOSv2 (VoiceMOS Challenge 2024): a strong naturalness MOS predictor whose weights live on the
Hugging Face Hub (`sarulab-speech/UTMOSv2`) and whose package is installed from GitHub, so it runs only
where both are reachable. Without them it fails with an error saying so; the offline judges still run.
"""

from __future__ import annotations

import importlib.metadata
import os

import numpy as np
import torch

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.frames import SAMPLE_RATE

HUB_REPO = "sarulab-speech/UTMOSv2"
INSTALL = "pip install git+https://github.com/sarulab-speech/UTMOSv2.git"
LICENCE = "see github.com/sarulab-speech/UTMOSv2 (code MIT; check the weights' terms)"


def _hub_revision() -> str | None:
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(HUB_REPO).sha
    except Exception:  # any failure only leaves the revision unrecorded
        return None


class Utmosv2:
    name = "utmosv2"
    columns = ("utmosv2",)

    def __init__(self, device: str | torch.device | None = None):
        try:
            import utmosv2
        except ImportError as exc:
            raise NotFoundError("UTMOSv2 is not installed (it is not on PyPI)",
                                f"where GitHub and the Hugging Face Hub are reachable: {INSTALL}") from exc
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise NotFoundError("UTMOSv2 needs the Hugging Face Hub for its weights and HF_HUB_OFFLINE is set",
                                "run predict-mos with --judges dnsmos,distillmos, or where the Hub is reachable")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            try:
                self.model = utmosv2.create_model(pretrained=True, device=self.device)
            except TypeError:  # releases before the `device` argument
                self.model = utmosv2.create_model(pretrained=True)
        except Exception as exc:  # download errors come in many types (requests, hub, OSError)
            raise NotFoundError(f"UTMOSv2 could not load its weights from the Hub: {str(exc).splitlines()[0]}",
                                "check the network; the offline judges are dnsmos and distillmos") from exc
        self.revision = _hub_revision()

    def describe(self) -> dict:
        return {"model": f"UTMOSv2 fusion_stage3 fold 0 ({HUB_REPO})",
                "revision": self.revision, "package": f"utmosv2 {importlib.metadata.version('utmosv2')}",
                "licence": LICENCE}

    def score(self, wave: np.ndarray) -> dict[str, float]:
        audio = np.asarray(wave, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise BadInputError("UTMOSv2 needs a non-empty mono waveform")
        try:  # utmosv2 0.1 takes `data` (16 kHz); earlier snapshots took `input_tensor` + `sample_rate`
            value = self.model.predict(data=audio, device=self.device, num_workers=0, verbose=False)
        except TypeError:
            value = self.model.predict(input_tensor=torch.from_numpy(audio), sample_rate=SAMPLE_RATE,
                                       device=self.device)
        return {"utmosv2": float(np.asarray(value).reshape(-1)[0])}
