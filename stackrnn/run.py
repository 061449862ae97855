"""The run directory: what a user keeps from a training run, and the one way to load it back.

    runs/NAME/
      config.toml          the full resolved config ([model], [data], [train])
      vocab.json           the tokenizer and vocabulary
      model.safetensors    weights, best by validation loss
      last.safetensors     weights at the last checkpoint, for resuming
      optimizer.safetensors  the optimizer's tensors; the rest of its state is in trainer.json
      trainer.safetensors  the trainer's tensors: torch's RNG state, the carried hidden state
      trainer.json         step, epoch, position in the epoch, best metric, RNG, scheduler and fp16 loss-scaler state
      metrics.jsonl        one JSON object per log or evaluation

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over the old file,
so a crash or a full disk leaves the previous file whole. Nothing is pickled: tensors are safetensors, the
rest is JSON and TOML, so loading a run never executes code from it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from .config import read_toml
from .files import atomic_write, atomic_write_text
from .data.tokenizers import Tokenizer
from .errors import InputError

CONFIG, VOCAB, BEST, LAST = "config.toml", "vocab.json", "model.safetensors", "last.safetensors"
OPTIMIZER, TRAINER_TENSORS, TRAINER, METRICS = "optimizer.safetensors", "trainer.safetensors", "trainer.json", "metrics.jsonl"
LOCK = ".lock"


class RunDir:
    """A run directory on disk. `RunDir.create` for a new run, `RunDir.open` for an existing one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.made = False  # whether `create` made the folder (rather than finding it empty)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @staticmethod
    def check_new(path: str | Path) -> None:
        """An InputError if `path` cannot become a new run directory: it exists and is not an empty folder. Only a
        stackrnn run is offered --resume; anything else is the user's, and another --out is the way."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(f"--out {path} is a file, not a folder: choose another --out")
        if not path.exists() or not any(path.iterdir()):
            return
        if (path / CONFIG).is_file():
            raise InputError(f"run directory {path} already exists and is not empty: continue it with --resume {path}, or choose another --out")
        raise InputError(f"--out {path} is a folder with other files in it, not a stackrnn run: choose another --out (a new or empty folder)")

    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        """A new, empty run directory. An existing non-empty one is never written into."""
        path = Path(path)
        cls.check_new(path)
        existed = path.is_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create run directory {path} ({e.strerror}): choose another --out") from None
        run = cls(path)
        run.made = not existed
        return run

    def discard(self) -> None:
        """Remove what `create` made and this process wrote into it: a run that failed before its first checkpoint
        cannot be resumed, and left behind it would refuse the same --out when the user tries again. An empty
        folder the user had made before stays."""
        if self.made:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for p in self.path.iterdir():  # (create found it empty: everything in it is this run's)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

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

    @contextmanager
    def lock(self):
        """Hold the run directory for one training process; a second one fails at once with a clear message.
        The lock is the kernel's (flock) on the file .lock, so it is released even when the holder is killed; the
        holder removes the file when it is done, so a finished run keeps no trace of it."""
        if fcntl is None:  # pragma: no cover - not POSIX: no lock rather than a false one
            yield
            return
        path = self / LOCK
        while True:
            f = open(path, "a+")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise InputError(f"run directory {self.path} is being trained by {holder}: wait for it to finish or stop it") from None
            # the holder before us removes the file as it lets go: if it did so after we opened it, our lock is on
            # a file no one else will open, and guards nothing. Then open the path again.
            try:
                if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            f.close()
        with f:
            f.seek(0)
            f.truncate()
            f.write(f"process {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                path.unlink(missing_ok=True)  # while still holding the lock, so no one can be holding the file
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # -- config, vocabulary, metrics --------------------------------------------------------------------------
    def save_config_text(self, toml: str) -> None:
        atomic_write_text(self / CONFIG, toml)

    def load_config_tables(self) -> dict:
        return read_toml(self / CONFIG)

    def save_tokenizer(self, tokenizer: Tokenizer) -> None:
        tokenizer.save(self / VOCAB)

    def load_tokenizer(self) -> Tokenizer:
        return Tokenizer.load(self / VOCAB)

    def append_metrics(self, record: dict) -> None:
        # one short line appended and flushed: a crash loses at most the line being written
        with open(self / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def trim_metrics(self, step: int) -> None:
        """Keep only the records up to `step` (and no line cut short): the metrics of the checkpoint resumed from."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write_text(self / METRICS, "".join(json.dumps(r) + "\n" for r in kept))

    def read_metrics(self) -> list[dict]:
        path = self / METRICS
        if not path.exists():
            return []
        records = []
        # a line cut short by a crash, or otherwise damaged (bytes that are not UTF-8, JSON that is not a record
        # with a numeric step), is passed over: the metrics are a log to read, the run does not depend on them
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
                records.append(record)
        return records

    # -- tensors ----------------------------------------------------------------------------------------------
    def save_model(self, model: nn.Module, name: str, step: int | None = None) -> None:
        # save_model (not save_file) because tied weights share storage; it writes each shared tensor once
        metadata = None if step is None else {"step": str(step)}
        _write_safetensors(self / name, lambda tmp: save_model(model, tmp, metadata=metadata))

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

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor], step: int | None = None) -> None:
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        metadata = None if step is None else {"step": str(step)}
        _write_safetensors(self / name, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    def tensors_step(self, name: str) -> int | None:
        """The step a checkpoint file was written at (from its safetensors metadata), or None."""
        try:
            with safe_open(str(self / name), framework="pt") as f:
                step = (f.metadata() or {}).get("step")
        except FileNotFoundError:
            raise InputError(f"{self / name} is missing: the run directory is incomplete") from None
        except Exception as e:
            raise InputError(f"{self / name} is corrupted or truncated ({str(e).splitlines()[0][:120]}): restore it or retrain") from None
        if step is None:
            return None
        try:
            return int(step)
        except ValueError:
            raise InputError(f"{self / name} is corrupted (its step {step[:40]!r} is not a number): restore it or retrain") from None

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
        except (ValueError, RecursionError) as e:
            # ValueError: not UTF-8, not JSON, or an integer of more than 4,300 digits; RecursionError: nested
            # thousands deep
            reason = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())
            raise InputError(f"{path} is corrupted ({reason}): restore it or retrain") from None
        if not isinstance(data, dict):
            raise InputError(f"{path} is corrupted (expected a JSON object): restore it or retrain")
        return data


def _write_safetensors(path: Path, save) -> None:
    """atomic_write(path, save) with safetensors' failed writes raised as the OSError they are: safetensors reports
    a full disk as SafetensorError("... IoError(Os { code: 28, ... })"), which would otherwise read as a bug."""
    try:
        atomic_write(path, lambda tmp: save(str(tmp)))
    except SafetensorError as e:
        code = re.search(r"\bcode: (\d+)", str(e))
        if code is None and "IoError" not in str(e):
            raise
        number = int(code.group(1)) if code else errno.EIO
        raise OSError(number, os.strerror(number), str(path)) from None
