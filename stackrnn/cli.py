"""The command line: argparse subcommands, each a thin call into the library. Nothing imports this module.

    stackrnn train    [--config FILE.toml] [--dataset NAME | --data PATH] [--out RUN | --resume RUN] [options]
    stackrnn generate RUN --prefix TEXT [--prefix TEXT ...] [--length N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
    stackrnn eval     RUN [--split valid|test] [--json]
    stackrnn summary  [--config FILE.toml] [options]
    stackrnn plot     RUN [RUN ...] --out DIR

Every [model], [data] and [train] config field is also an option (--hidden-size 512, --no-progress), with the
field's one-line doc as its help; options override the config file, which overrides the defaults. Bad input is
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .config import check_value, fields, parse_flag_value, read_toml
from .data.pipeline import DataConfig
from .errors import InputError
from .models.lm import ModelConfig
from .optim import TrainConfig

SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
#: what `train --resume` may change: how much longer to train, and how it looks
RESUMABLE = {"train.epochs", "train.max_minutes", "train.max_steps", "train.progress", "train.sample_prefix", "train.sample_length", "train.device"}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'stackrnn train: error: ...' and exit status 2, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field, grouped by section; absent options stay absent (they override nothing)."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"[{section}] options (override the config file)")
        for f, _ in fields(cls):
            if not f.metadata.get("cli", True):
                continue
            flag = "--" + f.name.replace("_", "-")
            help_text = f.metadata["help"] + f" (default: {f.default})"
            if f.type in ("bool",) or f.default is True or f.default is False:
                group.add_argument(flag, dest=f"{section}.{f.name}", action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_text)
            else:
                choices = f.metadata.get("choices")
                metavar = "{" + ",".join(choices) + "}" if choices else f.name.upper()
                group.add_argument(flag, dest=f"{section}.{f.name}", default=argparse.SUPPRESS, metavar=metavar,
                                   help=help_text)


def overrides_from(args: argparse.Namespace) -> dict[str, dict]:
    """The config options given on the command line, as {section: {field: value}}, typed and checked."""
    tables: dict[str, dict] = {s: {} for s in SECTIONS}
    for key, value in vars(args).items():
        if "." not in key:
            continue
        section, name = key.split(".", 1)
        cls = SECTIONS[section]
        if isinstance(value, str):
            value = parse_flag_value(cls, name, value)
        tables[section][name] = check_value(cls, name, value, section, label=f"--{name.replace('_', '-')}")
    return tables


def build_config(config_file: str | None, overrides: dict[str, dict]):
    from .train import RunConfig

    tables = read_toml(config_file) if config_file else {}
    for section, values in overrides.items():
        if values:
            base = tables.setdefault(section, {})
            if not isinstance(base, dict):
                raise InputError(f"{config_file}: [{section}] must be a table")
            base.update(values)
            if section == "data" and ("dataset" in values or "data" in values):
                # a source given on the command line replaces the file's, whichever kind it was
                for other in ("dataset", "data"):
                    if other not in values:
                        base.pop(other, None)
    return RunConfig.from_tables(tables, config_file or "options")


# -- subcommands --------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .run import RunDir
    from .train import RunConfig, train

    overrides = overrides_from(args)
    if args.resume:
        if args.config or args.out:
            raise InputError("--resume RUN continues a run with its own config: leave out --config and --out")
        cfg = RunConfig.of_run(RunDir.open(args.resume, need=("config.toml",)))
        changed = {f"{s}.{k}" for s, values in overrides.items() for k in values}
        refused = sorted(changed - RESUMABLE)
        if refused:
            raise InputError(f"--resume keeps the run's config; these options would change it: {', '.join(refused)}. "
                             f"Only {', '.join(sorted(RESUMABLE))} may change")
        for key in changed:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, overrides[section][name])
        cfg.train.validate()
        out = args.resume
    else:
        cfg = build_config(args.config, overrides)
        name = cfg.data.dataset or (Path(cfg.data.data).stem if cfg.data.data else "embedded")
        out = args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train(cfg, out, resume=bool(args.resume))
    parts = [f"{result.stopped} after {result.step} steps, {result.epoch} epochs, {result.seconds:.0f}s"]
    if result.train_loss is not None:
        parts.append(f"train perplexity {_ppl(result.train_loss):.3f}")
    if result.best_valid_loss is not None:
        parts.append(f"best valid perplexity {_ppl(result.best_valid_loss):.3f}")
    print("; ".join(parts))
    print(f"run directory: {result.run}")
    if result.sample:
        print(f"--- sample ---\n{result.sample}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import check_sampling, generate
    from .run import BEST
    from .train import load_run

    temperature = 0.0 if args.greedy else args.temperature
    check_sampling(args.length, temperature, args.top_k, args.top_p)  # before the (slower) load
    _, tokenizer, model = load_run(args.run, BEST if args.weights == "best" else "last.safetensors")
    texts = generate(model, tokenizer, args.prefix, args.length, temperature=temperature, top_k=args.top_k,
                     top_p=args.top_p, seed=args.seed)
    if args.json:
        print(json.dumps([{"prefix": p, "text": t} for p, t in zip(args.prefix, texts)], ensure_ascii=False))
    else:
        print("\n\n".join(texts))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .data.pipeline import eval_batches, prepare
    from .evaluate import evaluate_lm, lm_metrics
    from .run import BEST
    from .train import load_run

    cfg, tokenizer, model = load_run(args.run, BEST if args.weights == "best" else "last.safetensors")
    data = prepare(cfg.data, tokenizer=tokenizer)
    ids = data.valid if args.split == "valid" else data.test
    if ids is None or ids.numel() < 2:
        raise InputError(f"run {args.run} has no {args.split} split: train with --test-fraction (or a dataset with its own test set)")
    metrics = {"split": args.split, "tokens": int(ids.numel()), **lm_metrics(evaluate_lm(model, eval_batches(cfg.data, ids)), tokenizer.level)}
    if args.json:
        print(json.dumps(metrics))
    else:
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    import torch

    from .data.pipeline import prepare
    from .models.lm import LanguageModel
    from .summary import summary

    if args.vocab_size is not None and args.vocab_size < 1:
        raise InputError(f"--vocab-size: expected an integer >= 1, got {args.vocab_size}")
    cfg = build_config(args.config, overrides_from(args))
    vocab = args.vocab_size or len(prepare(cfg.data).tokenizer)
    model = LanguageModel.from_config(cfg.model, vocab)
    print(summary(model, (cfg.data.num_steps, cfg.data.batch_size), dtype=torch.long))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_runs

    for path in plot_runs(args.runs, args.out):
        print(path)
    return 0


def _ppl(loss: float) -> float:
    import math

    return math.exp(min(loss, 50))


def add_run_arguments(p: argparse.ArgumentParser, json_help: str) -> None:
    """The arguments of every command that reads a trained run."""
    p.add_argument("run", metavar="RUN", help="a run directory written by stackrnn train")
    p.add_argument("--weights", choices=("best", "last"), default="best", help="best-by-validation or last checkpoint (default: best)")
    p.add_argument("--json", action="store_true", help=json_help)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="stackrnn", description="Deep (stacked) recurrent networks: train, generate, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"stackrnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    p = sub.add_parser("train", help="train a language model into a run directory",
                       description="Train a language model. Options override --config, which overrides the defaults.")
    p.add_argument("--config", metavar="FILE.toml", help="a TOML file with [model], [data] and [train] tables (see examples/)")
    p.add_argument("--out", metavar="RUN", help="the new run directory (default: runs/NAME-DATE-TIME); never overwritten")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    add_config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="generate text from a trained run",
                       description="Continue one or more prefixes with text sampled from a trained language model.")
    add_run_arguments(p, json_help="print a JSON list of {prefix, text}")
    p.add_argument("--prefix", action="append", required=True, help="text to continue; repeat for several (run as one batch)")
    p.add_argument("--length", type=int, default=200, help="tokens to generate per prefix (default: 200)")
    p.add_argument("--temperature", type=float, default=1.0, help="divide the logits by this; lower is more conservative, 0 is greedy (default: 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample only from the K most likely tokens; 0 keeps all (default: 0)")
    p.add_argument("--top-p", type=float, default=1.0, help="sample from the smallest set of tokens whose probability reaches P (default: 1.0)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (same as --temperature 0)")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling; the same seed gives the same text")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="evaluate a trained run on its validation or test split",
                       description="Score a trained language model: loss, perplexity and (character models) bits per character.")
    add_run_arguments(p, json_help="print one JSON object with loss, perplexity and more")
    p.add_argument("--split", choices=("valid", "test"), default="valid", help="which held-out split (default: valid)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="draw training curves of one or more runs as PNG files",
                       description="Plot loss, perplexity, learning rate and gradient norm against steps, comparing runs.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by stackrnn train")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files (created if needed)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("summary", help="print a table of a config's model: layers, output shapes, parameters",
                       description="Build the model a config describes and print each layer, its output shape and parameter count.")
    p.add_argument("--config", metavar="FILE.toml", help="a TOML config (see examples/); default: the built-in defaults")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary size to assume instead of reading the data")
    add_config_options(p)
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    # library warnings (such as a damaged checkpoint passed over) as one line each, like the errors
    warnings.showwarning = lambda message, *_, **__: print(f"stackrnn {args.command}: warning: {message}", file=sys.stderr)
    try:
        return args.func(args)
    except InputError as e:
        print(f"stackrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder, a permission: the user's environment, not a bug
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"stackrnn {args.command}: error: {e.strerror or e}{where}: check the path, its permissions and free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stackrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
