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


_UNSAFE = re.compile(r"[\s/\\:*?\"<>|]+")


def safe_name(text: str) -> str:
    """A file-system-safe, human-readable name (unicode letters kept, separators and spaces replaced)."""
    text = unicodedata.normalize("NFC", str(text)).strip()
    text = _UNSAFE.sub("_", text).strip("._")
    return text or "_"


def check_name(name: str, what: str = "name") -> str:
    """Validate a user-chosen artifact name (corpus, units, study…) so it can be a folder name."""
    if not name or safe_name(name) != unicodedata.normalize("NFC", name):
        raise BadInputError(
            f"{what} {name!r} cannot be used as a folder name",
            "use letters, digits, '-', '_' or '.', with no spaces or slashes",
        )
    return name


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> Workspace:
        return cls(Path(root) if root is not None else default_workspace())

    def corpus_dir(self, name: str) -> Path:
        return self.root / "corpora" / name

    def features_dir(self, corpus: str, encoder: str, layer: int | None) -> Path:
        return self.root / "features" / corpus / safe_name(encoder) / (f"L{layer}" if layer is not None else "L-")

    def units_dir(self, name: str) -> Path:
        return self.root / "units" / name

    def vocoder_dir(self, name: str) -> Path:
        return self.root / "vocoders" / name

    def stimuli_dir(self, name: str) -> Path:
        return self.root / "stimuli" / name

    def reports_dir(self, name: str) -> Path:
        return self.root / "reports" / name

    @property
    def database_path(self) -> Path:
        return self.root / "obt_eval.db"
