"""The stimuli a study starts from: one folder of WAVs per system, matched by utterance id (the file stem)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from obt_eval.errors import BadInputError
from obt_eval.integrity import verify_file
from obt_eval.workspace import Workspace, check_name, is_safe_name

RESERVED_SYSTEMS = ("anchor",)
ROLE_TEST, ROLE_REFERENCE, ROLE_ANCHOR = "test", "reference", "anchor"


@dataclass
class SystemSource:
    """One system's clips: utterance id → file, with the folder's sample rate and any sidecar metadata."""

    name: str
    directory: Path
    role: str
    files: dict[str, Path]
    sample_rates: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_system_spec(spec: str) -> tuple[str, str]:
    """``NAME=DIR`` → (name, dir)."""
    name, sep, directory = spec.partition("=")
    if not sep or not name or not directory:
        raise BadInputError(f"cannot read the system {spec!r}", "write it as NAME=DIR, e.g. xlsr53=stimuli/xlsr53")
    return name.strip(), directory.strip()


def resolve_directory(directory: str | os.PathLike, workspace: Workspace | None) -> Path:
    """A folder path, or the name of synthesized stimuli in the workspace (``stimuli/<name>``)."""
    path = Path(directory)
    if path.is_dir():
        return path
    if workspace is not None and is_safe_name(str(directory)) and workspace.stimuli_dir(str(directory)).is_dir():
        return workspace.stimuli_dir(str(directory))
    raise BadInputError(f"no folder {directory}", "give a folder of WAV files (one per utterance, named by its id)")


def scan_system(name: str, directory: str | os.PathLike, role: str = ROLE_TEST,
                workspace: Workspace | None = None) -> SystemSource:
    """List a system's WAVs (top level, else recursively); unreadable files are collected as problems."""
    check_name(name, "system name")
    if name in RESERVED_SYSTEMS:
        raise BadInputError(f"the system name {name!r} is reserved for the degraded anchor", "choose another name")
    folder = resolve_directory(directory, workspace)
    paths = sorted(folder.glob("*.wav")) or sorted(folder.rglob("*.wav"))
    source = SystemSource(name=name, directory=folder.resolve(), role=role, files={})
    for path in paths:
        uid = path.stem
        if uid in source.files:
            source.problems.append(f"{name}: two files for utterance {uid!r} ({source.files[uid]}, {path}); "
                                   "kept the first")
            continue
        try:
            info = sf.info(str(path))
        except Exception as exc:  # soundfile raises several types for broken files
            source.problems.append(f"{name}: cannot read {path}: {exc}")
            continue
        source.files[uid] = path.resolve()
        source.sample_rates[uid] = int(info.samplerate)
        source.durations[uid] = float(info.duration)
    for sidecar in ("stimuli.json", "meta.json"):
        if (folder / sidecar).exists():
            try:
                source.meta = json.loads((folder / sidecar).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                source.problems.append(f"{name}: ignored unreadable {folder / sidecar}")
            break
    # synthesized stimuli list each clip's checksum: a damaged clip is named, never played to raters
    recorded = source.meta.get("checksums") if isinstance(source.meta.get("checksums"), dict) else {}
    for path in paths:
        expected = recorded.get(path.relative_to(folder).as_posix())
        if expected is not None:
            verify_file(path, expected, f"re-run the `obt-eval synthesize` command that wrote {folder} (same "
                                        "options): it re-synthesizes damaged or missing clips")
    if not source.files:
        raise BadInputError(f"no readable WAV files in {folder} for system {name!r}",
                            "point NAME=DIR at a folder of .wav files named by utterance id")
    return source


def check_sources(sources: list[SystemSource], allow_partial: bool = False) -> tuple[list[str], list[str]]:
    """The utterances all systems share, and warnings; raises if coverage or sample rates differ.

    webMUSHRA's validator refuses conditions with different rates; so do we, since a rate difference
    is audible (bandwidth) and would tell raters which system they hear.
    """
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise BadInputError(f"system names repeat: {names}", "give every system a different name")
    if len(sources) < 2:
        raise BadInputError("a study needs at least two systems", "add another --system NAME=DIR")
    warnings = [p for s in sources for p in s.problems]
    common = set.intersection(*(set(s.files) for s in sources))
    union = set.union(*(set(s.files) for s in sources))
    if common != union:
        gaps = {s.name: sorted(union - set(s.files)) for s in sources if union - set(s.files)}
        detail = "; ".join(f"{n} lacks {len(m)} ({', '.join(m[:5])}{'…' if len(m) > 5 else ''})"
                           for n, m in gaps.items())
        if not allow_partial:
            raise BadInputError(f"the systems do not cover the same utterances: {detail}",
                                "synthesize the missing utterances, or pass --allow-partial to use the shared ones")
        warnings.append(f"using the {len(common)} utterances all systems share; left out: {detail}")
    if not common:
        raise BadInputError("the systems share no utterance ids", "name each WAV by its utterance id in every folder")
    rates = {(s.name, s.sample_rates[u]) for s in sources for u in common}
    distinct = sorted({r for _, r in rates})
    if len(distinct) > 1:
        by_system = {n: sorted({r for m, r in rates if m == n}) for n in names}
        raise BadInputError(f"the stimuli have different sample rates: {by_system}",
                            "resample every system's clips to one rate (or re-synthesize) before creating the study")
    for uid in sorted(common):
        lengths = [s.durations[uid] for s in sources]
        if max(lengths) > 1.25 * min(lengths) + 0.1:
            shown = ", ".join(f"{x:.2f}" for x in lengths)
            warnings.append(f"utterance {uid}: durations differ across systems ({shown} s)")
    return sorted(common), warnings
