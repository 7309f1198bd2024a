"""The clips of one system: a stimuli folder from `synthesize`/`tts-baseline`, or any folder of WAVs.

A stimuli folder lists its clips in stimuli.csv (id → file) and names its corpus in stimuli.json; a bare
folder of WAVs is read as `<utterance id>.wav`, as `study create` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from obt_eval.atomic import read_json
from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.workspace import Workspace


@dataclass
class SystemClips:
    directory: Path
    system: str
    clips: dict[str, Path]
    meta: dict = field(default_factory=dict)
    missing: list[dict] = field(default_factory=list)  # listed in stimuli.csv, file absent: reported

    def corpus(self, corpus: Corpus | str | None = None, workspace: Workspace | None = None,
               required: bool = True) -> Corpus | None:
        """The corpus the clips speak (`corpus` wins over what stimuli.json says)."""
        if isinstance(corpus, Corpus):
            return corpus
        name = corpus or self.meta.get("corpus_path") or self.meta.get("corpus")
        if not name:
            if required:
                raise BadInputError(f"{self.directory} does not say which corpus it speaks",
                                    "pass --corpus NAME (the corpus whose utterance ids name the WAVs)")
            return None
        try:
            return Corpus.open(name, workspace)
        except NotFoundError:
            if corpus is None and self.meta.get("corpus") and name != self.meta["corpus"]:
                return Corpus.open(self.meta["corpus"], workspace)  # the workspace moved: try the name
            raise


def read_clips(directory: str | os.PathLike, workspace: Workspace | None = None) -> SystemClips:
    folder = Path(directory)
    if not folder.is_dir() and workspace is not None and workspace.stimuli_dir(str(directory)).is_dir():
        folder = workspace.stimuli_dir(str(directory))
    if not folder.is_dir():
        raise NotFoundError(f"no folder {directory}", "give a stimuli folder (from `obt-eval synthesize`) or a "
                                                      "folder of <utterance id>.wav files")
    meta = read_json(folder / "stimuli.json") if (folder / "stimuli.json").exists() else {}
    clips: dict[str, Path] = {}
    missing: list[dict] = []
    if (folder / "stimuli.csv").exists():
        table = pd.read_csv(folder / "stimuli.csv", dtype={"id": str})
        for row in table.itertuples(index=False):
            if (folder / str(row.file)).exists():
                clips[str(row.id)] = folder / str(row.file)
            else:
                missing.append({"id": str(row.id), "problem": f"{row.file} is listed in stimuli.csv but missing"})
    else:
        clips = {p.stem: p for p in sorted(folder.glob("*.wav"))}
    if not clips:
        raise BadInputError(f"no WAV clips in {folder}", "point --stimuli at a folder of <utterance id>.wav files")
    return SystemClips(folder, str(meta.get("system") or folder.name), clips, meta, missing)
