"""A resume log: one JSON line per finished item, keyed by the settings that produced it.

Batch scoring (LID, ASR, quality judges) appends a line as soon as an item is done, so a killed run
continues where it stopped; lines written under other settings (another model or revision) or for a
file whose bytes changed are ignored, never reused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ResumeLog:
    def __init__(self, path: str | os.PathLike, key: dict[str, Any]):
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=str))  # what a line read back compares equal to
        self.done: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed run may be cut short
                    continue
                if isinstance(row, dict) and row.pop("key", None) == self.key and "item" in row:
                    self.done[row["item"]] = row["value"]

    def get(self, item: str, fingerprint: str | None = None) -> Any | None:
        """The value recorded for `item`, if its fingerprint (e.g. file checksum) is unchanged."""
        entry = self.done.get(item)
        if entry is None or entry.get("fingerprint") != fingerprint:
            return None
        return entry["result"]

    def put(self, item: str, result: Any, fingerprint: str | None = None) -> None:
        value = {"fingerprint": fingerprint, "result": result}
        self.done[item] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": self.key, "item": item, "value": value}, ensure_ascii=False,
                                    default=str) + "\n")
