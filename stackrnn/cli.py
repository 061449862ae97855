"""The command line: argparse subcommands, each a thin call into the library. Nothing imports this module.

    stackrnn train     [--task lm|classify|translate] [--config FILE.toml] [--dataset NAME | --data PATH] [--out RUN | --resume RUN] [options]
    stackrnn generate  RUN --prefix TEXT [--prefix TEXT ...] [--length N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
    stackrnn eval      RUN [--split valid|test] [--data FILE] [--beam N] [--json]
    stackrnn predict   RUN TEXT [TEXT ...] | --file FILE [--json]          (classification runs)
    stackrnn translate RUN TEXT [TEXT ...] | --file FILE [--beam N] [--attention MAP.png [--target TEXT]] [--json]
    stackrnn inspect   RUN --text TEXT | --text-file FILE --out DIR [--units N] [--max-tokens N]   (language models)
    stackrnn probe     RUN --text TEXT | --text-file FILE | --nested N --out DIR [--properties P1,P2]
    stackrnn sweep     [CONFIG] --grid SECTION.KEY=V1,V2 [--grid ...] [--set SECTION.KEY=V] [--budget-minutes M] --out DIR
    stackrnn summary   [--task lm|classify|translate] [--config FILE.toml] [options]
    stackrnn plot      RUN [RUN ...] --out DIR

Every [model], [data] and [train] config field of the run's task is also an option (--hidden-size 512,
--no-progress), with the field's one-line doc as its help; options override the config file, which overrides
the defaults. The task comes from --task, else the config file's `task = ...`, else it is "lm"; `stackrnn train
--task classify --help` lists the classifier's options, `--task translate --help` the translator's. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .config import allowed_types, check_value, get_path, leaves, option_named, options, parse_flag_value, read_toml, set_path
from .errors import InputError, did_you_mean, plural
from .tasks import TASK_NAMES, a_run_of
from .train import build_config, default_out, sections


#: what `train --resume` may change: how much longer to train, and how it looks
RESUMABLE = {"train.epochs", "train.max_minutes", "train.max_steps", "train.progress", "train.sample_prefix", "train.sample_length", "train.device",
             "train.tensorboard"}


def one_line(text: object) -> str:
    """A message on one line: a line break that a file name or an argument brought into it is shown as \\n."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'stackrnn train: error: ...' and exit status 2, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def add_config_options(parser: argparse.ArgumentParser, task: str) -> None:
    """One option per config field of `task`, grouped by section; absent options stay absent (they override
    nothing). The --task option itself picks which fields these are (see `peek_task`)."""
    parser.add_argument("--task", choices=TASK_NAMES, default=argparse.SUPPRESS,
                        help="what to train: lm (language model, the default), classify (text classifier) or "
                             "translate (sequence to sequence); a config file may say it instead (task = \"classify\")")
    parser.set_defaults(options_task=task)  # whose options these are, whether or not --task was given
    for section, cls in sections(task).items():
        group = parser.add_argument_group(f"[{section}] options (override the config file)")
        for o in options(cls):
            if not o.field.metadata.get("cli", True):
                continue
            flag, dest = "--" + o.name.replace("_", "-"), f"{section}:{o.name}"
            help_text = o.field.metadata["help"]
            if "default:" not in help_text:  # (some say their default in words: "default: torch's init")
                help_text += f" (default: {o.default})"
            kinds, _ = allowed_types(o.type)
            if kinds == (bool,):
                group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                   help=help_text)
            elif bool in kinds:  # a switch that may also take a value (residual: on, off, or from layer k)
                group.add_argument(flag, dest=dest, nargs="?", const=True, default=argparse.SUPPRESS, metavar="K",
                                   help=help_text)
                group.add_argument("--no-" + flag[2:], dest=dest, action="store_const", const=False,
                                   default=argparse.SUPPRESS, help=f"the same as {flag} false")
            else:
                choices = o.field.metadata.get("choices")
                metavar = "{" + ",".join(choices) + "}" if choices else o.name.upper()
                group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def overrides_from(args: argparse.Namespace) -> dict[str, dict]:
    """The config options given on the command line, as {section: {field: value}} (nested tables for nested
    configs: {"model": {"stack": {"hidden_size": 512}}}), typed and checked."""
    known = sections(getattr(args, "options_task", "lm"))
    tables: dict[str, dict] = {s: {} for s in known}
    for key, value in vars(args).items():
        if ":" not in key:
            continue
        section, name = key.split(":", 1)
        o = option_named(known[section], name, section)
        if isinstance(value, str):
            value = parse_flag_value(o.owner, o.path[-1], value)
        set_path(tables[section], o.path, check_value(o.owner, o.path[-1], value, section, label=f"--{name.replace('_', '-')}"))
    return tables


def peek_task(argv: list[str]) -> str:
    """The task of a train or summary command line, needed before its options can be defined: --task, else the
    config file's (or the resumed run's) `task`, else "lm"."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    for flag in ("--task", "--config", "--resume"):
        pre.add_argument(flag)
    try:
        known, _ = pre.parse_known_args(argv)
    except argparse.ArgumentError:  # such as --config without its value: the full parser says so, in one line
        return "lm"
    if known.task is not None:
        return known.task if known.task in TASK_NAMES else "lm"  # the full parser reports a bad --task
    for path in (known.config, known.resume and str(Path(known.resume) / "config.toml")):
        if path and Path(path).is_file():
            task = read_toml(path).get("task", "lm")
            if task not in TASK_NAMES:
                raise InputError(f"{path}: task: expected one of {', '.join(TASK_NAMES)}, got {task!r}")
            return task
    return "lm"


# -- subcommands --------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .run import RunDir
    from .tasks.lm import perplexity
    from .train import RunConfig, preflight, train

    overrides = overrides_from(args)
    if args.nproc is not None and args.nproc < 1:
        raise InputError(f"--nproc: expected an integer >= 1, got {args.nproc}")
    launching = (args.nproc or 1) > 1 and not distributed.launched()
    if launching and not args.resume and not args.out:
        raise InputError("--nproc: name the run directory with --out, so that every process trains into the same one")
    if args.resume:
        if args.config or args.out:
            raise InputError("--resume RUN continues a run with its own config: leave out --config and --out")
        cfg = RunConfig.of_run(RunDir.open(args.resume, need=("config.toml",)))
        if getattr(args, "task", cfg.task) != cfg.task:
            raise InputError(f"--resume keeps the run's task ({cfg.task}): leave out --task {args.task}")
        # the command line that started the run, given again, changes nothing: only real changes are refused
        changed = {".".join(path): (path, v) for path, v in leaves(overrides) if not _same_value(get_path(cfg, path), v, path[0])}
        refused = sorted(set(changed) - RESUMABLE)
        if refused:
            raise InputError(f"--resume keeps the run's config; these options would change it: {', '.join(refused)}. "
                             f"Only {', '.join(sorted(RESUMABLE))} may change")
        for path, value in changed.values():
            setattr(get_path(cfg, path[:-1]), path[-1], value)
        cfg.train.validate()
        out = args.resume
    else:
        cfg = build_config(args.config, overrides, getattr(args, "task", None))
        out = args.out or default_out(cfg)
    if launching:
        device = cfg.train.device
        if device == "mps":
            raise InputError("--nproc: data-parallel training runs on cpu or cuda, not mps")
        import torch

        if device in ("cuda", "auto") and torch.cuda.is_available() and torch.cuda.device_count() < args.nproc:
            raise InputError(f"--nproc {args.nproc}: this machine has {torch.cuda.device_count()} GPUs, one per process is "
                             "needed: use fewer processes, or --device cpu")
        preflight(cfg, out, resume=bool(args.resume), world_size=args.nproc)  # bad input: one line here, not N
        return distributed.launch(args.nproc, _without_nproc(args.argv))
    try:
        result = train(cfg, out, resume=bool(args.resume))
    finally:
        distributed.shutdown()
    if distributed.launched() and int(os.environ.get("RANK", "0")) != 0:
        distributed.exit_worker(0)  # rank 0 reports for all
    parts = [f"{result.stopped} after {plural(result.step, 'step')}, {plural(result.epoch, 'epoch')}, {result.seconds:.0f}s"]
    if cfg.task == "lm":
        if result.train_loss is not None:
            parts.append(f"train perplexity {perplexity(result.train_loss):.3f}")
        if result.best_valid_loss is not None:
            parts.append(f"best valid perplexity {perplexity(result.best_valid_loss):.3f}")
    else:
        if result.train_loss is not None:
            parts.append(f"train loss {result.train_loss:.4f}")
        if result.best_valid is not None:
            parts.append("best valid " + " ".join(f"{k} {v:.4f}" for k, v in result.best_valid.items()))
    print("; ".join(parts))
    print(f"run directory: {result.run}")
    if result.sample:
        print(f"--- sample ---\n{result.sample}")
    if distributed.launched():
        distributed.exit_worker(0)
    return 0


def _same_value(old, new, section: str) -> bool:
    """Whether an option's value is the run's: a run keeps its data paths absolute, so a relative one is compared
    as the absolute path it names."""
    from .data.pipeline import absolute

    return new == old or (section == "data" and isinstance(new, str) and isinstance(old, str) and absolute(new) == old)


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line minus --nproc N (or --nproc=N): what each torchrun process runs."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def cmd_generate(args: argparse.Namespace) -> int:
    from .api import load
    from .generate import check_sampling

    temperature = 0.0 if args.greedy else args.temperature
    check_sampling(args.length, temperature, args.top_k, args.top_p)  # before the (slower) load
    run = load(args.run, weights=args.weights, task="lm")
    texts = run.generate(args.prefix, args.length, temperature=temperature, top_k=args.top_k, top_p=args.top_p,
                         seed=args.seed)
    if args.json:
        print(json.dumps([{"prefix": p, "text": t} for p, t in zip(args.prefix, texts)], ensure_ascii=False))
    elif len(texts) == 1:
        print(texts[0])
    else:  # samples may hold blank lines themselves: a line naming each prefix tells them apart
        for prefix, text in zip(args.prefix, texts):
            print(f"--- prefix {prefix!r} ---\n{text}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .api import load

    if args.examples < 0:
        raise InputError(f"--examples: expected an integer >= 0, got {args.examples}")
    searching = [f"--{n.replace('_', '-')}" for n in ("beam", "max_length", "length_penalty") if getattr(args, n) is not None]
    if searching:  # before the (slower) load
        _check_search(_or(args.beam, 1), args.max_length, _or(args.length_penalty, 0.6))
    run = load(args.run, weights=args.weights)
    cfg = run.config
    if searching and cfg.task != "translate":
        raise InputError(f"{' '.join(searching)}: for translation runs; this is {a_run_of(cfg.task)}")
    if cfg.task == "translate":
        given = [f"--{n.replace('_', '-')}" for n in ("format", "text_column", "label_column") if getattr(args, n)]
        if given:
            raise InputError(f"{' '.join(given)}: for classification runs; a translation run reads --data as "
                             "source<TAB>target lines")
        if args.encoding is not None:
            cfg.data.encoding = check_value(type(cfg.data), "encoding", args.encoding, "data", "--encoding")
        metrics = run.evaluate(args.split, data=args.data, beam=_or(args.beam, 1), max_length=args.max_length,
                               length_penalty=_or(args.length_penalty, 0.6), examples=args.examples)
        if not args.json:
            print(_format_translation(metrics))
    elif cfg.task == "lm":
        given = [f"--{n.replace('_', '-')}" for n in ("data", "format", "text_column", "label_column", "encoding") if getattr(args, n)]
        if given:
            raise InputError(f"{' '.join(given)}: for classification runs; a language model is scored on its own splits")
        metrics = run.evaluate(args.split)
        if not args.json:
            print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    else:
        for name in ("format", "text_column", "label_column", "encoding"):  # how to read --data, if not as the run did
            if getattr(args, name) is not None:
                setattr(cfg.data, name, check_value(type(cfg.data), name, getattr(args, name), "data", f"--{name.replace('_', '-')}"))
        metrics = run.evaluate(args.split, data=args.data)
        if not args.json:
            from .evaluate import format_classification

            print(format_classification(metrics))
    if args.json:
        print(json.dumps(metrics))
    return 0


def _check_search(beam: int, max_length: int | None, length_penalty: float) -> None:
    """decode.check_search's ValueError ("max_length: ...") as the option's one-line error ("--max-length: ...")."""
    from .decode import check_search

    try:
        check_search(beam, max_length, length_penalty)
    except ValueError as e:
        raise InputError(f"--{e}".replace("_", "-", 1)) from None


def _or(value, default):
    return default if value is None else value


def _format_translation(metrics: dict) -> str:
    head = "  ".join(f"{k} {metrics[k]:.4f}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}"
                     for k in ("split", "pairs", "beam", "bleu", "exact_match", "loss"))
    lines = [head, f"BLEU signature: {metrics['bleu_signature']}"]
    for e in metrics["examples"]:
        lines += ["", f"source:      {e['source']}", f"translation: {e['translation']}", f"reference:   {e['reference']}"]
    return "\n".join(lines)


def cmd_translate(args: argparse.Namespace) -> int:
    from .api import load
    from .data.labelled import read_lines

    if bool(args.texts) == bool(args.file):
        raise InputError("give the sentences to translate as arguments or with --file FILE (one per line), not both or neither")
    _check_search(args.beam, args.max_length, args.length_penalty)  # before the (slower) load
    texts = args.texts or read_lines(args.file, encoding=args.encoding)
    if args.target is not None and args.attention is None:
        raise InputError("--target is the translation whose attention --attention draws: give --attention MAP.png too")
    if args.attention is not None and len(texts) != 1:
        raise InputError(f"--attention draws one sentence's map, but {len(texts)} sentences were given: give one")
    if args.attention is not None and not args.attention.lower().endswith(".png"):
        raise InputError(f"--attention {args.attention}: the map is written as PNG; give a file name ending in .png")
    run = load(args.run, weights=args.weights, task="translate")
    task, model = run.task, run.model
    if args.attention is not None:  # whatever can stop the map stops the command before anything is printed
        from .plot import check_matplotlib

        check_matplotlib()
        task.check_attention(model)
        if args.target is not None:
            task.prepare_input([args.target])
    results = run.translate_details(texts, beam=args.beam, max_length=args.max_length, length_penalty=args.length_penalty)
    drawn = None
    if args.attention is not None:
        drawn = _draw_attention(args, task, model, texts[0], results[0]["translation"])
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    else:
        print("\n".join(r["translation"] for r in results))
    if drawn is not None:
        print(f"attention map: {drawn}", file=sys.stderr)
    return 0


def _draw_attention(args, task, model, source: str, translation: str):
    """The attention map of `source` and --target, or of the model's own `translation` of it (its <eos> row only
    if it ended before the length limit, else the decoder never produced one)."""
    import torch

    from .decode import length_limits
    from .plot import plot_attention

    if args.target is not None:
        target, ended = args.target, True
    else:
        (prepared,) = task.prepare_input([source])
        limit = length_limits(torch.tensor([len(task.source_tokenizer.encode(prepared))]), args.max_length)[0]
        target, ended = translation, len(translation.split()) < limit
    weights, source_words, target_words = task.attention_map(model, source, target, ended=ended)
    return plot_attention(weights.numpy(), source_words, target_words, args.attention,
                          title=f"{args.run}: attention ({model.attention_kind})")


def cmd_predict(args: argparse.Namespace) -> int:
    from .api import load
    from .data.labelled import read_lines

    if bool(args.texts) == bool(args.file):
        raise InputError("give the texts to classify as arguments or with --file FILE (one per line), not both or neither")
    texts = args.texts or read_lines(args.file, encoding=args.encoding)
    predictions = load(args.run, weights=args.weights, task="classify").predict(texts)
    if args.json:
        print(json.dumps(predictions, ensure_ascii=False))
    else:
        for p in predictions:
            probs = "  ".join(f"{label} {prob:.3f}" for label, prob in p["probabilities"].items())
            print(f"{p['label']}\t{probs}\t{p['text']}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .summary import summary

    if args.run is not None:
        given = ["--config"] * bool(args.config) + ["--vocab-size"] * (args.vocab_size is not None) + [
            f"--{key.split(':', 1)[1].replace('_', '-')}" for key in vars(args) if ":" in key]
        if given:
            raise InputError(f"{' '.join(given)}: a run's model is described by its own config; give RUN alone, "
                             "or leave out RUN to describe a config")
        from .api import load

        print(load(args.run, weights=args.weights).summary())
        return 0
    if args.vocab_size is not None and args.vocab_size < 1:
        raise InputError(f"--vocab-size: expected an integer >= 1, got {args.vocab_size}")
    cfg = build_config(args.config, overrides_from(args), getattr(args, "task", None))
    model, shape, kwargs = cfg.make_task().summary_model(args.vocab_size)
    print(summary(model, shape, **kwargs))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect.page import inspect_run
    from .run import BEST

    text = _text_argument(args)
    result = inspect_run(args.run, text, args.out, weights=BEST if args.weights == "best" else "last.safetensors",
                         units=args.units, max_tokens=args.max_tokens)
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return 0
    for layer in result.layers:
        gates = "  ".join(f"{g} {v['below_0.1']:.0%}<0.1 {v['above_0.9']:.0%}>0.9" for g, v in layer.saturation.items())
        print(f"layer {layer.layer} ({layer.cell} {layer.hidden_size}{' x2' if layer.directions == 2 else ''})"
              + (f"  gates: {gates}" if gates else ""))
        for unit in layer.top_units[:3]:
            print(f"    {unit.label}")
    print(f"page: {result.out / 'index.html'} ({result.tokens} tokens{', cut' if result.truncated else ''})")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .inspect.probes import PROPERTIES, probe_run
    from .run import BEST

    text = _text_argument(args)
    properties = [p.strip() for p in args.properties.split(",")] if args.properties else list(PROPERTIES)
    result = probe_run(args.run, text, properties=properties, out=args.out, max_tokens=args.max_tokens,
                       seed=args.seed, weights=BEST if args.weights == "best" else "last.safetensors")
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    names = list(result["properties"])
    width = max(12, *(len(n) for n in names))
    print(f"{'layer':<12}" + "".join(f"{n:>{width + 2}}" for n in names))
    print(f"{'(majority)':<12}" + "".join(f"{result['properties'][n]['majority']:>{width + 2}.3f}" for n in names))
    for layer in result["layers"]:
        print(f"{layer['name']:<12}" + "".join(f"{layer['accuracy'][n]:>{width + 2}.3f}" for n in names))
    print(f"held-out accuracy over {result['tokens']} tokens; plot and table in {args.out}")
    return 0


def _text_argument(args: argparse.Namespace) -> str:
    """--text TEXT or --text-file FILE (read whole, newlines kept), or for probes --nested N; exactly one."""
    nested = getattr(args, "nested", None)
    if sum(x is not None for x in (args.text, args.text_file, nested)) != 1:
        raise InputError("give the text to read with --text TEXT or --text-file FILE"
                         + (" or --nested N" if hasattr(args, "nested") else "") + " (one of them)")
    if nested is not None:
        from .inspect.probes import nested_text

        if nested < 1:
            raise InputError(f"--nested: expected a number of characters >= 1, got {nested}")
        return nested_text(nested, seed=args.seed)
    if args.text is not None:
        return args.text
    path = Path(args.text_file)
    try:
        return path.read_text(encoding=args.encoding)
    except FileNotFoundError:
        raise InputError(f"--text-file {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"--text-file {path} is a folder: give a text file") from None
    except UnicodeError:  # UnicodeDecodeError, or a codec such as "undefined" that refuses all
        raise InputError(f"--text-file {path} is not {args.encoding} text: pass its encoding with --encoding") from None
    except LookupError:
        raise InputError(f"--encoding {args.encoding}: unknown encoding (e.g. utf-8, latin-1)") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import markdown_table, sweep

    table = sweep(args.config, args.grid or [], args.out, fixed=args.set or [], task=args.task,
                  budget_minutes=args.budget_minutes, progress=args.progress)
    print(markdown_table(table), end="")
    print(f"sweep directory: {args.out} (sweep.json, sweep.md, plots; each run in runs/)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_runs

    for path in plot_runs(args.runs, args.out):
        print(path)
    return 0


def add_run_arguments(p: argparse.ArgumentParser, json_help: str) -> None:
    """The arguments of every command that reads a trained run."""
    p.add_argument("run", metavar="RUN", help="a run directory written by stackrnn train")
    p.add_argument("--weights", choices=("best", "last"), default="best", help="best-by-validation or last checkpoint (default: best)")
    p.add_argument("--json", action="store_true", help=json_help)


def add_text_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    """The arguments of the commands that read a text through a model and write into a folder."""
    p.add_argument("--text", help="the text to read")
    p.add_argument("--text-file", metavar="FILE", help="read the text from FILE instead")
    p.add_argument("--encoding", default="utf-8", help="the text encoding of --text-file (default: utf-8)")
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)


def make_parser(task: str = "lm") -> argparse.ArgumentParser:
    """The parser; the train and summary commands get the config options of `task` (see `peek_task`)."""
    parser = Parser(prog="stackrnn", description="Deep (stacked) recurrent networks: train, generate, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"stackrnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    parser.commands = sub.choices  # each command's parser, by name

    p = sub.add_parser("train", help="train a language model, a text classifier or a translator into a run directory",
                       description=f"Train a model (task: {task}; --task classify for a text classifier, --task "
                                   "translate for sequence to sequence). Options "
                                   "override --config, which overrides the defaults.")
    p.add_argument("--config", metavar="FILE.toml", help="a TOML file with [model], [data] and [train] tables (see examples/)")
    p.add_argument("--out", metavar="RUN", help="the new run directory (default: runs/NAME-DATE-TIME); never overwritten")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    p.add_argument("--nproc", type=int, metavar="N", help="train data-parallel in N processes on this machine (torchrun "
                   "with DistributedDataParallel; gloo on CPU, NCCL on GPU); each takes 1/N of every batch")
    add_config_options(p, task)
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
                       description="Score a trained run. Language models: loss, perplexity and (character models) bits "
                                   "per character. Classifiers: accuracy, precision, recall and F1 per class, macro F1 "
                                   "and the confusion matrix.")
    add_run_arguments(p, json_help="print one JSON object (loss and perplexity, or accuracy, macro_f1 and per-class figures)")
    p.add_argument("--split", choices=("valid", "test"), default="valid", help="which held-out split (default: valid)")
    p.add_argument("--data", metavar="FILE", help="classifiers: score this labelled file instead of a split")
    p.add_argument("--format", help="classifiers: the format of --data (default: as the run's training data)")
    p.add_argument("--text-column", help="classifiers: the text column or key of --data (default: as the run's)")
    p.add_argument("--label-column", help="classifiers: the label column or key of --data (default: as the run's)")
    p.add_argument("--encoding", help="classifiers and translators: the text encoding of --data (default: as the run's)")
    p.add_argument("--beam", type=int, help="translators: beam size; 1 is greedy search (default: 1)")
    p.add_argument("--length-penalty", type=float, help="translators: GNMT's length penalty alpha for beam search (default: 0.6)")
    p.add_argument("--max-length", type=int, help="translators: most words per translation (default: 2 x source words + 10)")
    p.add_argument("--examples", type=int, default=10, help="translators: translations to show beside their references (default: 10)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("translate", help="translate sentences with a trained translation run",
                       description="Translate each sentence with beam search (greedy with --beam 1), one translation per "
                                   "line; optionally draw the attention map of one sentence as PNG.")
    add_run_arguments(p, json_help="print a JSON list of {source, translation, unknown}")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="sentences to translate")
    p.add_argument("--file", metavar="FILE", help="translate every non-blank line of FILE instead")
    p.add_argument("--encoding", default="utf-8", help="the text encoding of --file (default: utf-8)")
    p.add_argument("--beam", type=int, default=5, help="beam size; 1 is greedy search (default: 5)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="GNMT's length penalty alpha; 0 compares plain "
                   "log-probabilities, which favours short translations (default: 0.6)")
    p.add_argument("--max-length", type=int, help="most words per translation (default: 2 x source words + 10)")
    p.add_argument("--attention", metavar="MAP.png", help="also draw the attention of each translated word over the "
                   "source words as a PNG heat map (one sentence)")
    p.add_argument("--target", metavar="TEXT", help="with --attention: draw the attention for this translation instead "
                   "of the model's own (a given sentence pair)")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("predict", help="classify texts with a trained classification run",
                       description="Print each text's predicted label and the probability of every label.")
    add_run_arguments(p, json_help="print a JSON list of {text, label, probabilities}")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    p.add_argument("--file", metavar="FILE", help="classify every non-blank line of FILE instead")
    p.add_argument("--encoding", default="utf-8", help="the text encoding of --file (default: utf-8)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("plot", help="draw training curves of one or more runs as PNG files",
                       description="Plot loss, perplexity, learning rate and gradient norm against steps, comparing runs.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by stackrnn train")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files (created if needed)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("inspect", help="look inside a language model: units, activations and gates, layer by layer",
                       description="Read a text through a trained language model and write a self-contained HTML page "
                                   "(the text coloured by a chosen unit's activation, layer by layer, the units most "
                                   "correlated with simple features first), PNG heat maps and per-layer gate saturation.")
    add_run_arguments(p, json_help="print the summary (top units and gate saturation per layer) as JSON")
    add_text_arguments(p, out_help="a new folder for index.html and the plots")
    p.add_argument("--units", type=int, default=32, help="units per layer offered on the page and drawn (default: 32)")
    p.add_argument("--max-tokens", type=int, default=2000, help="read at most this many tokens (default: 2000)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("probe", help="fit linear probes from each layer's states to properties of a text",
                       description="Freeze a trained language model, read a text through it once, and fit a linear "
                                   "classifier from each layer's states (the embedding as layer 0) to each property: "
                                   "character class, position in the word, bracket depth, the token N steps back "
                                   "(token_back_N). Held-out accuracy per layer goes to probes.json and probes.png.")
    add_run_arguments(p, json_help="print the whole result as JSON")
    add_text_arguments(p, out_help="a new folder for probes.json and probes.png")
    p.add_argument("--nested", type=int, metavar="N", help="read N characters of a synthetic nested-bracket language "
                   "instead (for bracket depth; the model must know its characters)")
    p.add_argument("--properties", metavar="P1,P2", help="comma-separated properties (default: char_class, "
                   "position_in_word, bracket_depth, token_back_1, token_back_3)")
    p.add_argument("--max-tokens", type=int, default=20_000, help="read at most this many tokens (default: 20000)")
    p.add_argument("--seed", type=int, default=0, help="which blocks of the text are held out (default: 0)")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("sweep", help="train a grid of configs under one budget each; tabulate and plot the results",
                       description="Train one run per combination of the --grid values (on top of CONFIG and the --set "
                                   "values), each for at most --budget-minutes, one after another; then write a table and "
                                   "plots of the best validation figure against the first numeric grid key and against "
                                   "wall time.")
    p.add_argument("config", metavar="CONFIG", nargs="?", help="a TOML config (see examples/); default: the built-in defaults")
    p.add_argument("--grid", action="append", metavar="SECTION.KEY=V1,V2,...",
                   help="values to sweep, e.g. model.num_layers=1,2,4,8; repeat for a grid (every combination)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="a value for every run, e.g. data.data=PATH or train.epochs=100; repeatable")
    p.add_argument("--budget-minutes", type=float, metavar="M", help="train each run for at most M minutes (the same "
                   "time budget for all); default: the config's epochs and limits")
    p.add_argument("--task", choices=TASK_NAMES, help="the task, if the config file does not say (default: lm)")
    p.add_argument("--out", required=True, metavar="DIR", help="a new folder for the sweep (never overwritten)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="show each run's progress bar (default: off)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("summary", help="print a table of a run's or a config's model: layers, output shapes, parameters",
                       description="Print each layer of a trained run's model (or of the model a config describes), "
                                   "its output shape and parameter count.")
    p.add_argument("run", metavar="RUN", nargs="?", help="a run directory written by stackrnn train (default: describe "
                   "the model of --config and the options instead)")
    p.add_argument("--weights", choices=("best", "last"), default="best", help=argparse.SUPPRESS)
    p.add_argument("--config", metavar="FILE.toml", help="a TOML config (see examples/); default: the built-in defaults")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary size to assume instead of reading the data "
                   "(classifiers: with 2 classes)")
    add_config_options(p, task)
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        task = peek_task(argv[1:]) if argv[:1] in (["train"], ["summary"]) else "lm"
    except (InputError, OSError) as e:  # the config file named on the command line cannot be read
        print(f"stackrnn {argv[0]}: error: {one_line(e)}", file=sys.stderr)
        return 2
    parser = make_parser(task)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse fills a '*' positional once, at its first chance: in `translate RUN --beam 5 "a text"`, the
        # texts after the options come back unparsed. Texts they are; anything else is still an error.
        if hasattr(args, "texts") and not any(e.startswith("-") for e in extra):
            args.texts = [*args.texts, *extra]
        else:
            command = parser.commands[args.command]  # the error is the command's: 'stackrnn train: error: ...'
            options = [s for action in command._actions for s in action.option_strings]
            mistyped = [e.split("=")[0] for e in extra if e.startswith("--")]
            near = did_you_mean(mistyped[0], options, str) if mistyped else ""
            command.error(f"unrecognized arguments: {' '.join(extra)}{near}")
    args.argv = argv
    # library warnings (such as a damaged checkpoint passed over) as one line each, like the errors
    warnings.showwarning = lambda message, *_, **__: print(f"stackrnn {args.command}: warning: {one_line(message)}", file=sys.stderr)
    try:
        return args.func(args)
    except InputError as e:
        print(f"stackrnn {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder, a permission: the user's environment, not a bug
        where = f" ({one_line(e.filename)})" if getattr(e, "filename", None) else ""
        print(f"stackrnn {args.command}: error: {one_line(e.strerror or e)}{where}: check the path, its permissions and free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stackrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
