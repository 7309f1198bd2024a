"""Loading Hugging Face checkpoints by id or local folder, with errors that say what to do, and pinning.

A checkpoint is pinned by the Hub commit it was resolved to (`_commit_hash`), or for a local folder by a
content hash of its weight and config files, so a result names exactly which weights made it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from obt_eval.encoders.fingerprint import directory_fingerprint
from obt_eval.errors import NotFoundError

MMS_LICENCE = "CC-BY-NC-4.0"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load-time chatter (progress bars, 'newly initialised' notes) for one block."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_or_explain(loader, source: str, what: str, **kwargs):
    """`loader(source, **kwargs)` (a `from_pretrained`), turning a missing checkpoint into NotFoundError."""
    try:
        with quiet_transformers():
            return loader(source, **kwargs)
    except OSError as exc:
        local = Path(source).exists()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotFoundError(
            f"cannot load the {what} {source!r}: {first}",
            "check that the folder was written by save_pretrained (config.json, weights, preprocessor files)"
            if local else
            "check the model id; without the Hugging Face Hub, download the model where it is reachable "
            "(huggingface-cli download ID --local-dir DIR) and pass DIR, or fill $HF_HOME and set HF_HUB_OFFLINE=1",
        ) from exc


def revision_of(source: str, config, revision: str | None = None) -> str | None:
    """The Hub commit a checkpoint resolved to, else a content hash of the local folder."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return commit
    if Path(source).is_dir():
        return directory_fingerprint(Path(source))
    return revision


def pick_device(device: str | torch.device | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
