"""The run directory: what a user keeps from a training run, and the one way to load it back.

    runs/NAME/
      config.toml          the full resolved config ([model], [data], [train])
      vocab.json           the tokenizer and vocabulary
      model.safetensors    weights, best by validation loss
      last.safetensors     weights at the last checkpoint, for resuming
      optimizer.safetensors  the optimizer's tensors; the rest of its state is in trainer.json
      trainer.safetensors  the trainer's tensors: torch's RNG state, the carried hidden state
      trainer.json         step, epoch, position in the epoch, best metric, RNG and scheduler state
      metrics.jsonl        one JSON object per log or evaluation

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over the old file,
so a crash or a full disk leaves the previous file whole. Nothing is pickled: tensors are safetensors, the
rest is JSON and TOML, so loading a run never executes code from it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from .config import dumps_toml, from_dict, read_toml, to_dict
from .data.pipeline import DataConfig
from .data.tokenizers import Tokenizer
from .errors import InputError
from .models.lm import LanguageModel, ModelConfig
from .optim import TrainConfig

CONFIG, VOCAB, BEST, LAST = "config.toml", "vocab.json", "model.safetensors", "last.safetensors"
OPTIMIZER, TRAINER_TENSORS, TRAINER, METRICS = "optimizer.safetensors", "trainer.safetensors", "trainer.json", "metrics.jsonl"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary path beside `path`, make it durable, then rename it onto `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; a run directory is ordinary user data
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@dataclass
class RunConfig:
    """A run's whole config: the three sections, each owned by its module."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig

    def to_toml(self) -> str:
        return dumps_toml({"model": to_dict(self.model), "data": to_dict(self.data), "train": to_dict(self.train)})

    @classmethod
    def from_tables(cls, tables: dict, where: str) -> RunConfig:
        unknown = set(tables) - {"model", "data", "train"}
        if unknown:
            raise InputError(f"{where}: unknown section [{sorted(unknown)[0]}]; known sections: [model], [data], [train]")
        return cls(from_dict(ModelConfig, tables.get("model", {}), f"{where}: model"),
                   from_dict(DataConfig, tables.get("data", {}), f"{where}: data"),
                   from_dict(TrainConfig, tables.get("train", {}), f"{where}: train"))


class RunDir:
    """A run directory on disk. `RunDir.create` for a new run, `RunDir.open` for an existing one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        """A new, empty run directory. An existing non-empty one is never written into."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise InputError(f"run directory {path} already exists and is not empty: continue it with --resume {path}, or choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create run directory {path} ({e.strerror}): choose another --out") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | Path, need: tuple[str, ...] = (CONFIG, VOCAB, BEST)) -> RunDir:
        """An existing run directory holding the files in `need`."""
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"run directory {path} does not exist: pass the --out folder of a training run")
        missing = [name for name in need if not (path / name).is_file()]
        if missing:
            raise InputError(f"run directory {path} lacks {', '.join(missing)}: it is not a complete stackrnn run (was training stopped before the first checkpoint?)")
        return cls(path)

    # -- config, vocabulary, metrics --------------------------------------------------------------------------
    def save_config(self, cfg: RunConfig) -> None:
        atomic_write_text(self / CONFIG, cfg.to_toml())

    def load_config(self) -> RunConfig:
        return RunConfig.from_tables(read_toml(self / CONFIG), str(self / CONFIG))

    def save_tokenizer(self, tokenizer: Tokenizer) -> None:
        tokenizer.save(self / VOCAB)

    def load_tokenizer(self) -> Tokenizer:
        return Tokenizer.load(self / VOCAB)

    def append_metrics(self, record: dict) -> None:
        # one short line appended and flushed: a crash loses at most the line being written
        with open(self / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict]:
        path = self / METRICS
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        return records

    # -- tensors ----------------------------------------------------------------------------------------------
    def save_model(self, model: nn.Module, name: str) -> None:
        # save_model (not save_file) because tied weights share storage; it writes each shared tensor once
        atomic_write(self / name, lambda tmp: save_model(model, str(tmp)))

    def load_model(self, model: nn.Module, name: str) -> None:
        tensors = self.load_tensors(name)
        state = model.state_dict()
        # tied weights were saved once under one of their names; give every name of the tensor its value
        missing = [k for k in state if k not in tensors]
        for k in list(missing):
            twin = next((t for t in state if t in tensors and state[t].data_ptr() == state[k].data_ptr()), None)
            if twin is not None:
                tensors[k] = tensors[twin]
                missing.remove(k)
        unexpected = [k for k in tensors if k not in state]
        wrong = [k for k in state if k in tensors and tensors[k].shape != state[k].shape]
        if missing or unexpected or wrong:
            detail = "; ".join(f"{what}: {', '.join(keys[:3])}" for what, keys in
                               (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
            raise InputError(f"weights file {self / name} does not fit the model in {self / CONFIG} ({detail}): the run directory is inconsistent")
        model.load_state_dict(tensors, strict=False)

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        atomic_write(self / name, lambda tmp: save_file(tensors, str(tmp)))

    def load_tensors(self, name: str) -> dict[str, torch.Tensor]:
        path = self / name
        try:
            return load_file(str(path))
        except FileNotFoundError:
            raise InputError(f"{path} is missing: the run directory is incomplete") from None
        except Exception as e:  # safetensors reports truncation and corruption with several exception types
            raise InputError(f"{path} is corrupted or truncated ({str(e).splitlines()[0][:120]}): restore it or retrain") from None

    def save_json(self, name: str, data: dict) -> None:
        atomic_write_text(self / name, json.dumps(data, indent=1))

    def load_json(self, name: str) -> dict:
        path = self / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path} is missing: the run directory is incomplete") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is corrupted ({e}): restore it or retrain") from None
        if not isinstance(data, dict):
            raise InputError(f"{path} is corrupted (expected a JSON object): restore it or retrain")
        return data


def load_run(path: str | Path, weights: str = BEST, device: str | torch.device = "cpu") -> tuple[RunConfig, Tokenizer, LanguageModel]:
    """Load a run for generation, evaluation or inspection: its config, tokenizer and model (in eval mode)."""
    run = RunDir.open(path, need=(CONFIG, VOCAB, weights))
    cfg = run.load_config()
    tokenizer = run.load_tokenizer()
    model = LanguageModel.from_config(cfg.model, len(tokenizer))
    run.load_model(model, weights)
    return cfg, tokenizer, model.to(device).eval()
