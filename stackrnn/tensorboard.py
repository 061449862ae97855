"""Metrics as TensorBoard events, beside metrics.jsonl (which stays the record every other tool reads).

TensorBoard is an optional extra: pip install 'stackrnn[tensorboard]'. View with
`tensorboard --logdir RUN/tensorboard` (several runs: `--logdir runs/`).
"""

from __future__ import annotations

from pathlib import Path

from .errors import require

FOLDER = "tensorboard"
#: record keys that say where a record belongs rather than what was measured
_PLACE = {"step", "epoch", "split", "time"}


def check_available() -> None:
    """An InputError, before any run directory is touched, when --tensorboard cannot be honoured."""
    require("torch.utils.tensorboard", message="--tensorboard needs the tensorboard package: pip install "
            "'stackrnn[tensorboard]' (or leave out --tensorboard; metrics.jsonl is always written)")


class TensorBoardLog:
    """Writes each metrics record's numbers as scalars named SPLIT/KEY (train/loss, valid/accuracy, ...)."""

    def __init__(self, run_path: Path, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # on resume, events logged after the checkpoint (by a process that then died) are purged, as the
        # resume trims metrics.jsonl: the curves then show each step once
        self.writer = SummaryWriter(str(run_path / FOLDER), purge_step=None if resume_step is None else resume_step + 1)

    def write(self, record: dict) -> None:
        split = record.get("split", "train")
        for key, value in record.items():
            if key not in _PLACE and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{split}/{key}", value, record["step"])

    def close(self) -> None:
        self.writer.close()
