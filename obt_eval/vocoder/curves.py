"""The training record: CSV logs of losses and validation mel-L1, and a PNG of the curves.

CSV rather than TensorBoard event files: readable with pandas or a spreadsheet, and a resumed run
simply drops the rows written after its last checkpoint so the curve has no duplicated steps.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from obt_eval.atomic import atomic_path


class CsvLog:
    """Append-only CSV with a fixed header; `truncate(step)` forgets rows after a checkpoint."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns

    def truncate(self, step: int) -> None:
        if not self.path.exists():
            return
        table = pd.read_csv(self.path)
        with atomic_path(self.path) as tmp:
            table[table["step"] <= step].to_csv(tmp, index=False)

    def append(self, row: dict) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def read(self) -> pd.DataFrame:
        return pd.read_csv(self.path) if self.path.exists() else pd.DataFrame(columns=self.columns)


def plot_curves(train_log: pd.DataFrame, val_log: pd.DataFrame, out: Path, title: str = "") -> None:
    """Mel-L1 (train and validation), generator and discriminator losses against step."""
    import matplotlib

    matplotlib.use("Agg")  # headless: training runs on servers
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if not train_log.empty:
        axes[0].plot(train_log["step"], train_log["mel_l1"], label="train mel-L1", alpha=0.7)
        axes[1].plot(train_log["step"], train_log["loss_g"], label="generator")
        axes[1].plot(train_log["step"], train_log["loss_d"], label="discriminator")
    if not val_log.empty:
        axes[0].plot(val_log["step"], val_log["val_mel_l1"], "o-", label="validation mel-L1")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("L1 log-mel")
    axes[0].legend()
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("loss")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
