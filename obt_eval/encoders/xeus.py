"""XEUS (espnet/xeus) and other ESPnet SSL encoders, loaded through ESPnet's own SSL task builder.

Optional: needs ESPnet (``pip install "obt-eval[xeus]"`` then ``pip install --no-deps espnet==202511``,
see the README: ``pip install espnet`` alone would replace torch, because espnet 202511 pins
``setuptools<74`` while torch 2.13 needs ``setuptools>=77.0.3``).

The model is built as the research team builds it: ``espnet2.tasks.ssl.SSLTask.build_model`` from the
checkpoint folder's ``config.yaml``, then the ``.pth`` state dict. The folder is the Hub snapshot of
``espnet/xeus`` (``model/config.yaml`` + ``model/xeus_checkpoint*.pth``) or any local folder laid out
the same way (files at its top level work too).

Layers follow the project convention: 0 = input of the first E-Branchformer block (CNN front end,
linear pre-encoder, convolutional positional embedding), k = raw output of block k (ESPnet's
``return_all_hs`` list entry k-1; the final ``after_norm`` is never applied). The team's
``encode(...)[0][14]`` is therefore layer 15 here.

Why XEUS runs one utterance at a time: ESPnet's positional convolution and the cgMLP / merge depthwise
convolutions see padded frames (only attention masks them), so padding a batch would change the last
frames of shorter items. The waveform is normalised here, per utterance over its real samples (the CNN
front end's own ``normalize_audio`` is a layer norm over the whole padded batch tensor).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import types
from pathlib import Path

import numpy as np
import torch

from obt_eval.encoders.base import Encoder, normalise_waves, wave_mean_var
from obt_eval.encoders.fingerprint import files_fingerprint
from obt_eval.errors import BadInputError, NotFoundError

log = logging.getLogger(__name__)

# Same order as the in-house pipeline tries them; the bare name is the first upload on the Hub.
CHECKPOINT_NAMES = ("xeus_checkpoint_new.pth", "xeus_checkpoint.pth", "xeus_checkpoint_old.pth")
LAYER_NORM_EPS = 1e-5  # F.layer_norm(x, x.shape) in ESPnet's CNNFrontend(normalize_audio=True)
INSTALL_HINT = ('pip install "obt-eval[xeus]" && pip install --no-deps espnet==202511 '
                "(plain `pip install espnet` would replace torch: espnet pins setuptools<74, torch 2.13 needs >=77)")
# Model parts that must load from the checkpoint; loss heads and masking utilities may be absent.
ENCODER_PREFIXES = ("frontend.", "preencoder.", "normalize.", "encoder.")


def _model_dir(path: Path) -> Path:
    return path / "model" if (path / "model" / "config.yaml").exists() else path


def is_espnet_checkpoint(path: Path) -> bool:
    folder = _model_dir(Path(path))
    return (folder / "config.yaml").exists() and any(folder.glob("*.pth"))


def checkpoint_files(source: str, revision: str | None = None) -> tuple[Path, Path]:
    """(config.yaml, checkpoint .pth) of a local folder, or of the Hub snapshot of `source`."""
    path = Path(source)
    if not path.exists():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(source, revision=revision, allow_patterns=["model/*", "*.yaml"]))
        except Exception as exc:
            raise NotFoundError(
                f"cannot get the ESPnet checkpoint {source!r}: {str(exc).splitlines()[0] if str(exc) else exc}",
                "download it where the Hub is reachable (huggingface-cli download espnet/xeus) and pass the folder",
            ) from exc
    folder = _model_dir(path)
    config = folder / "config.yaml"
    if not config.exists():
        raise NotFoundError(f"{path} holds no config.yaml", "pass the espnet/xeus snapshot or its model/ folder")
    for name in CHECKPOINT_NAMES:
        if (folder / name).exists():
            return config, folder / name
    others = sorted(folder.glob("*.pth"))
    if len(others) == 1:
        return config, others[0]
    raise NotFoundError(
        f"{folder} holds {'no' if not others else 'several'} .pth checkpoints",
        f"keep one of {', '.join(CHECKPOINT_NAMES)} next to config.yaml",
    )


def read_config(config_path: Path) -> dict:
    import yaml

    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict) or "encoder" not in config:
        raise BadInputError(f"{config_path} is not an ESPnet SSL training config (no 'encoder')")
    return config


def xeus_num_layers(source: str) -> int:
    config, _ = checkpoint_files(source)
    return int(read_config(config).get("encoder_conf", {}).get("num_blocks", 0))


@contextlib.contextmanager
def _torchaudio_placeholder():
    """Let ESPnet's SSL task import without a working torchaudio.

    ``espnet2.tasks.ssl`` imports ``DefaultFrontend``, whose import chain reaches the beamformer module
    ``espnet2/enh/layers/beamformer_th.py`` and its top-level ``import torchaudio``; nothing XEUS runs uses
    it. torchaudio has no CPU build for torch 2.13 (the PyPI wheel needs libc10_cuda.so), so while ESPnet is
    imported a placeholder stands in; any use of it raises. It is removed from ``sys.modules`` afterwards.
    """
    try:
        import torchaudio  # noqa: F401

        yield
        return
    except (ImportError, OSError):
        pass

    def unusable(name: str):
        raise ImportError(f"torchaudio.{name} is not available (no torchaudio build for this torch); "
                          "obt-eval's XEUS loader does not use it")

    import importlib.machinery

    import transformers  # noqa: F401  (decides "is torchaudio available" now, before the placeholder exists)

    placeholder = types.ModuleType("torchaudio")
    placeholder.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    placeholder.__getattr__ = unusable  # type: ignore[method-assign]
    sys.modules["torchaudio"] = placeholder
    try:
        yield
    finally:
        if sys.modules.get("torchaudio") is placeholder:
            del sys.modules["torchaudio"]


def import_ssl_task():
    try:
        with _torchaudio_placeholder():
            from espnet2.tasks.ssl import SSLTask
    except ImportError as exc:
        raise BadInputError(f"XEUS needs ESPnet, which is not installed or incomplete ({exc})", INSTALL_HINT) from exc
    return SSLTask


def _namespace(config: dict) -> argparse.Namespace:
    """The training config as SSLTask.build_model reads it, with inference defaults for keys it may lack."""
    defaults = {"token_list": ["<unk>"], "input_size": None, "frontend": "wav2vec_cnn", "frontend_conf": {},
                "specaug": None, "specaug_conf": {}, "normalize": None, "normalize_conf": {}, "preencoder": None,
                "preencoder_conf": {}, "encoder_conf": {}, "loss": [], "util": [], "model": "espnet",
                "model_conf": {}, "init": None}
    merged = {**defaults, **config}
    merged["specaug"] = None  # inference: no augmentation module needed
    return argparse.Namespace(**merged)


def build_espnet_ssl_model(config_path: Path, checkpoint_path: Path | None) -> torch.nn.Module:
    """SSLTask.build_model from `config_path`, then the checkpoint's weights; checks every encoder weight loaded."""
    ssl_task = import_ssl_task()
    model = ssl_task.build_model(_namespace(read_config(config_path)))
    if checkpoint_path is not None:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        for key in ("model", "state_dict", "module"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if k.startswith(ENCODER_PREFIXES)]
        unexpected = [k for k in result.unexpected_keys if k.startswith(ENCODER_PREFIXES)]
        if missing or unexpected:
            raise BadInputError(
                f"{checkpoint_path} does not fit {config_path}: {len(missing)} encoder weights missing "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})",
                "use the config.yaml that was saved with this checkpoint",
            )
    return model.eval()


class XeusEncoder(Encoder):
    pads_exactly = False  # see the module docstring

    def __init__(
        self,
        source: str,
        layers: list[int],
        *,
        name: str | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        licence: str = "",
    ):
        self._set_identity(source, name, licence, device, dtype)
        import_ssl_task()  # a missing ESPnet is reported before any download
        config_path, checkpoint_path = checkpoint_files(source, revision)
        model = build_espnet_ssl_model(config_path, checkpoint_path)
        blocks = model.encoder.encoders
        self.total_layers = len(blocks)
        bad = [k for k in layers if not 0 <= k <= self.total_layers]
        if bad:
            raise BadInputError(f"{self.name} has layers 0..{self.total_layers}; asked for {bad}",
                                "layer 0 = input of the first block, k = output of block k")
        self.max_layer = max(layers)
        # Run only the blocks we need (ESPnet's encoder just iterates them; its after_norm is never read).
        # (at least one, so layer 0 is read by the hook on block 1, never through after_norm).
        model.encoder.encoders = blocks[: max(self.max_layer, 1)]
        frontend = model.frontend
        self.do_normalize = bool(getattr(frontend, "normalize_audio", False))
        if frontend is not None and hasattr(frontend, "normalize_audio"):
            frontend.normalize_audio = False  # done per utterance in encode(), never over a padded batch
        self.model = model.to(self._device, self.dtype)
        self._dim = int(model.encoder.output_size())
        self.revision = revision or files_fingerprint([config_path, checkpoint_path])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def layers(self) -> list[int | None]:
        return list(range(self.max_layer + 1))

    @property
    def device(self) -> torch.device:
        return self._device

    def utterance_stats(self, wave: np.ndarray) -> np.ndarray | None:
        return wave_mean_var(wave) if self.do_normalize else None

    @torch.inference_mode()
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor, layers: list[int | None], stats=None) -> dict:
        from espnet.nets.pytorch_backend.nets_utils import make_pad_mask

        if any(k is None for k in layers):
            raise BadInputError(f"{self.name} needs a layer number", "pass --layer K or --layers A-B")
        waves = waves.to(self._device, torch.float32)
        lengths = lengths.to(self._device)
        mask = (torch.arange(waves.shape[1], device=self._device)[None, :] < lengths[:, None]).to(waves.dtype)
        if self.do_normalize:
            if stats is not None and not isinstance(stats, torch.Tensor):
                stats = torch.as_tensor(np.asarray(stats))
            waves = normalise_waves(waves, mask, stats, LAYER_NORM_EPS)
        model = self.model
        feats, feat_lengths = model.frontend(waves.to(self.dtype), lengths)
        if model.normalize is not None:
            feats, feat_lengths = model.normalize(feats, feat_lengths)
        if model.preencoder is not None:
            feats, feat_lengths = model.preencoder(feats, feat_lengths)
        captured: dict[int, torch.Tensor] = {}
        handles = []
        blocks = model.encoder.encoders

        def first(x):
            return x[0] if isinstance(x, tuple) else x

        for k in set(layers):
            if k == 0 and len(blocks):
                handles.append(blocks[0].register_forward_pre_hook(
                    lambda _m, args: captured.__setitem__(0, first(args[0]))))
            elif k > 0:
                handles.append(blocks[k - 1].register_forward_hook(
                    lambda _m, _a, out, k=k: captured.__setitem__(k, first(first(out)))))
        try:
            out, _, _ = model.encoder(feats, feat_lengths, masks=make_pad_mask(feat_lengths).to(feats.device))
        finally:
            for handle in handles:
                handle.remove()
        if 0 in layers and not len(blocks):
            captured[0] = first(out)
        return {k: captured[k] for k in layers}
