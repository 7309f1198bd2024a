"""Where artifacts live: one workspace folder (``--workspace``, ``$OBT_EVAL_HOME`` or ``./workspace``).

Layout::

    corpora/<name>/            manifest.parquet, corpus.json, alignments.parquet, corpus.item, audio/
    features/<corpus>/<encoder>/L<layer>/   sharded feature store (see obt_eval.features.store)
    units/<name>/              codebook + unit sequences (see obt_eval.units.store)
    vocoders/<name>/           vocoder checkpoints
    stimuli/<name>/            synthesized WAVs per system
    obt_eval.db                the SQLite database of studies, ratings and jobs
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from obt_eval.errors import BadInputError

ENV_HOME = "OBT_EVAL_HOME"


def default_workspace() -> Path:
    return Path(os.environ.get(ENV_HOME) or "workspace")


_UNSAFE = re.compile(r"[\s/\\:*?\"<>|\x00-\x1f\x7f]+")
MAX_NAME_LENGTH = 120  # well under the 255-byte file name limit, even in UTF-8 with a suffix added


def safe_name(text: str) -> str:
    """A file-system-safe, human-readable name (unicode letters kept, separators and spaces replaced)."""
    text = unicodedata.normalize("NFC", str(text)).strip()
    text = _UNSAFE.sub("_", text).strip("._")
    return text or "_"


def is_safe_name(name: object) -> bool:
    """Can `name` be one folder inside the workspace (no separator, no `..`, not hidden, not too long)?"""
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH
            and safe_name(name) == unicodedata.normalize("NFC", name))


def check_name(name: str, what: str = "name") -> str:
    """Validate a user-chosen artifact name (corpus, units, study…) so it can be a folder name."""
    if not is_safe_name(name):
        raise BadInputError(
            f"{what} {name!r} cannot be used as a folder name",
            f"use letters, digits, '-', '_' or '.' (at most {MAX_NAME_LENGTH}), with no spaces or slashes, "
            "not starting with '.'",
        )
    return name


@dataclass(frozen=True)
class Workspace:
    """The workspace folder; `root` is always absolute, so it means the same in every process and cwd."""

    root: Path

    def __post_init__(self) -> None:
        # A relative root (the default `./workspace`) would point elsewhere in a job's child process,
        # which runs in another folder.
        object.__setattr__(self, "root", Path(self.root).expanduser().absolute())

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> Workspace:
        return cls(Path(root) if root is not None else default_workspace())

    # Artifact folders are named by users (forms, job parameters, CLI options): a name is one safe folder
    # name, so `../../x` can never make a write land outside the workspace.
    def corpus_dir(self, name: str) -> Path:
        return self.root / "corpora" / check_name(name, "corpus name")

    def features_dir(self, corpus: str, encoder: str, layer: int | None) -> Path:
        layer_dir = f"L{layer}" if layer is not None else "L-"
        return self.root / "features" / safe_name(corpus) / safe_name(encoder) / layer_dir

    def units_dir(self, name: str) -> Path:
        return self.root / "units" / check_name(name, "units name")

    def vocoder_dir(self, name: str) -> Path:
        return self.root / "vocoders" / check_name(name, "vocoder name")

    def stimuli_dir(self, name: str) -> Path:
        return self.root / "stimuli" / check_name(name, "stimuli name")

    def reports_dir(self, name: str) -> Path:
        return self.root / "reports" / check_name(name, "report name")

    @property
    def database_path(self) -> Path:
        return self.root / "obt_eval.db"
