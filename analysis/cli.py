"""The ``collab`` command line: train, eval, analyze, import, runs, app, zoo."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from analysis.errors import CollabError

REPO = Path(__file__).resolve().parent.parent


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that it stops the command like Ctrl-C does."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except CollabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        what = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}; {_resume_hint(args)}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


def _resume_hint(args: argparse.Namespace) -> str:
    if args.command == "train" and getattr(args, "out", None):
        return f"checkpoints written so far are kept: resume with `collab train --out {args.out} --resume`"
    if args.command == "search":
        return "runs and the search log written so far are kept: rerun the same command to continue"
    return "checkpoints written so far are kept (resume with --resume)"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (problem and where to look), like every other error."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number; give N >= 1")
    return value


def _add_overrides(p: argparse.ArgumentParser, help: str, metavar: str = "KEY=VALUE") -> None:
    """The repeatable ``--set KEY=VALUE`` option of a subcommand (collected in ``overrides``)."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar=metavar, help=help
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="collab", description="Train and explore collaboratively learned networks."
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a run from a YAML preset")
    p.add_argument(
        "config",
        nargs="?",
        help="YAML preset, e.g. configs/dml_digits.yaml (optional with --resume)",
    )
    p.add_argument(
        "--out",
        help="run folder to write (default: runs/<preset name>); it must be new or empty: "
        "training never writes into a folder holding other files or another run",
    )
    _add_overrides(p, "override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out exactly from checkpoints/last.safetensors (appending to "
        "its metrics and checkpoints, keeping its provenance); a finished run is left untouched, "
        "and a run that cannot continue exactly is refused, never restarted",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="per-peer and ensemble accuracy of a run")
    p.add_argument("run", help="run folder")
    p.add_argument("--checkpoint", default="best", help="best, last or epoch_NNN (default: best)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    _add_overrides(
        p,
        "where the run's data is on this machine, e.g. --set data.root=~/data (repeatable)",
        metavar="data.KEY=VALUE",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("analyze", help="compute probes on a run and write an HTML report")
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--probe",
        dest="probes",
        action="append",
        help="probe to run (repeatable; default: all that apply)",
    )
    p.add_argument(
        "--data", default="test", choices=["train", "test"], help="split to probe (default: test)"
    )
    p.add_argument("--limit", type=_positive_int, help="use only the first N samples")
    p.add_argument("--report", help="HTML report to write (default: RUN/report.html)")
    p.add_argument("--checkpoint", default="best", help="best, last or epoch_NNN (default: best)")
    p.add_argument("--refresh", action="store_true", help="recompute even when cached")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "import",
        help="import existing checkpoints (the authors', torchvision, timm, ours) as a run",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="checkpoint files (.pth, .pth.tar, .pt, .safetensors) or run folders; several "
        "become the peers of one run",
    )
    p.add_argument(
        "--source",
        required=True,
        help="how to read them: state_dict, torchvision, timm, dc, mcl_okd, od_cheap, "
        "anchornet, hcgnet",
    )
    p.add_argument(
        "--arch",
        help="registered model, the authors' name under --source, or torchvision/NAME, "
        "timm/NAME (optional where the files name it)",
    )
    p.add_argument("--out", required=True, help="run folder to write (new or empty)")
    _add_overrides(
        p,
        "a config key (data.name=cifar100, data.root=DIR, model.options.KEY=...) or an "
        "import key: entry=NAME (dict entry holding the weights), mean=[..], std=[..]",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "sweep",
        help="train a grid of configs x seeds, then summarise: mean ± sd, paired differences",
    )
    p.add_argument("config", help="YAML preset every run starts from")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a config key and its values (repeatable; every combination is a cell)",
    )
    p.add_argument("--seeds", default="0,1,2", help="train.seed values, e.g. 0,1,2 (default)")
    p.add_argument("--out", required=True, help="sweep folder (new or empty, or this sweep's)")
    _add_overrides(p, "override a value of the preset for every run (repeatable)")
    p.add_argument(
        "--control",
        metavar="KEY=VALUE",
        help="the cell the others are compared with (default: method.name=independent if in "
        "the grid, else the first cell)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "search", help="search per-stage widths under a parameter budget by widening a network"
    )
    p.add_argument("config", help="YAML preset of the narrow start network")
    p.add_argument(
        "--budget", required=True, help="most parameters (all peers), e.g. 50000, 50k or 1.2M"
    )
    p.add_argument("--out", required=True, help="search folder (new or empty, or this search's)")
    p.add_argument("--step", type=_positive_int, default=8, help="planes added per proposal (8)")
    p.add_argument(
        "--epochs-per-step", type=_positive_int, default=1, help="epochs per proposal (1)"
    )
    p.add_argument(
        "--noise",
        type=float,
        default=0.1,
        help="noise that lets copied units diverge, function still preserved (0.1; 0: copies "
        "stay identical to their originals forever)",
    )
    _add_overrides(p, "override a value of the preset (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "reconstruct", help="a smaller network for a few classes, from class-wise parts"
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--classes", required=True, help="class indices to keep, e.g. 0,3,7")
    p.add_argument("--out", required=True, help="new run folder to write (new or empty)")
    p.add_argument("--peer", type=int, default=0, help="peer to reconstruct (default: 0)")
    p.add_argument("--checkpoint", default="best", help="best, last or epoch_NNN (default: best)")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("runs", help="list the runs under a root folder")
    p.add_argument(
        "--root", default=str(REPO / "runs"), help="folder holding run folders (default: runs/)"
    )
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("app", help="open the Streamlit dashboard on localhost")
    p.add_argument(
        "--root", default=str(REPO / "runs"), help="runs root the app may open (default: runs/)"
    )
    p.add_argument("--port", type=int, default=8501)
    p.add_argument(
        "--address", default="127.0.0.1", help="listen address (default: localhost only)"
    )
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("zoo", help="rebuild the embedded default runs deterministically")
    p.add_argument("--root", default=str(REPO / "runs"))
    p.add_argument("--only", action="append", help="rebuild only this run (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_zoo)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from analysis.config import config_from_dict, load_config
    from analysis.config.schema import to_dict
    from analysis.training import Trainer

    out = Path(args.out) if args.out else None
    if args.resume:
        if out is None:
            raise CollabError("--resume needs --out RUN_FOLDER naming the run to continue")
        config = _resume_config(out, args)
    else:
        if args.config is None:
            raise CollabError(
                "collab train needs a YAML preset, e.g. collab train configs/dml_digits.yaml"
            )
        config = load_config(args.config, args.overrides)
        out = out or REPO / "runs" / Path(args.config).stem
    config = config_from_dict(to_dict(config))
    run = Trainer(config, out, progress=not args.no_progress).fit(resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 wrote the run
        print(f"run written to {run}")
    return 0


def _resume_config(out: Path, args: argparse.Namespace):
    """The config a resumed run continues with: the saved one (a given one must equal it)."""
    import yaml

    from analysis.config import config_from_dict, load_config
    from analysis.runs import CONFIG

    saved_path = out / CONFIG
    if not saved_path.is_file():
        if args.config and not (out.is_dir() and any(out.iterdir())):
            return load_config(args.config, args.overrides)  # killed before anything was saved
        raise CollabError(f"{out} has no {CONFIG} to resume from; start it without --resume")
    try:
        saved = config_from_dict(yaml.safe_load(saved_path.read_text()))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise CollabError(f"{saved_path} is not readable YAML; the run cannot be resumed") from None
    if args.config or args.overrides:
        given = (
            load_config(args.config, args.overrides)
            if args.config
            else load_config(saved_path, args.overrides)
        )
        if given.to_dict() != saved.to_dict():
            raise CollabError(
                f"the given config differs from the one {out} was trained with; resume without changes"
            )
    return saved


def cmd_eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from analysis.runs import load_run
    from analysis.training.stats import evaluate

    run = load_run(args.run, checkpoint=args.checkpoint)
    run.use_data(args.overrides)
    loader = DataLoader(run.dataset(args.split), batch_size=256)
    result = evaluate(run.model, loader, device=torch.device("cpu"))
    print(
        f"{run.name} ({run.manifest['method']} on {run.manifest['dataset']}, {args.split}, checkpoint {args.checkpoint})"
    )
    for name, acc, loss in zip(run.peer_names, result["peer_acc"], result["peer_loss"]):
        print(f"  {name:<24} acc {100 * acc:6.2f}%  loss {loss:.4f}")
    print(
        f"  {'ensemble':<24} acc {100 * result['ensemble_acc']:6.2f}%  loss {result['ensemble_loss']:.4f}"
    )
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from analysis.probes.suite import run_suite
    from analysis.runs import load_run
    from analysis.viz.report import write_report
    from analysis.viz.sections import report_sections

    run = load_run(args.run, checkpoint=args.checkpoint)
    results = run_suite(
        run,
        probes=args.probes,
        split=args.data,
        limit=args.limit,
        progress=not args.no_progress,
        refresh=args.refresh,
    )
    subtitle = f"{run.manifest['method']} on {run.manifest['dataset']}, {args.data} split, checkpoint {args.checkpoint}"
    path = write_report(
        args.report or run.path / "report.html",
        f"CollabLens: {run.name}",
        report_sections(run, results),
        subtitle=subtitle,
    )
    print(f"probes: {', '.join(results)}")
    print(f"report written to {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from analysis.config.schema import apply_override
    from analysis.runs.importers import import_checkpoints

    options: dict = {}
    for assignment in args.overrides:
        apply_override(options, assignment)
    run = import_checkpoints(
        args.paths, source=args.source, arch=args.arch, out=args.out, **options
    )
    print(
        f"imported {len(args.paths)} file(s) as {run.model.num_peers} peers "
        f"({', '.join(run.peer_names)}) into {run.path}"
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from analysis.runs.sweep import make_plan
    from analysis.training.sweep import run_sweep
    from analysis.viz.sweep import write_sweep_summary

    out = Path(args.out)
    plan = make_plan(args.config, args.grid, args.seeds, args.overrides)
    run_sweep(plan, out, progress=not args.no_progress)
    summary = write_sweep_summary(out, control=args.control)
    print(
        f"{len(summary.runs)} runs finished, {len(summary.missing)} not; "
        f"summary in {out / 'summary.csv'}, {out / 'summary.html'}"
    )
    return 0 if not summary.missing else 1


def cmd_search(args: argparse.Namespace) -> int:
    import shlex

    from analysis.runs.search import parse_count, plan_search
    from analysis.training.search import run_search

    plan = plan_search(
        args.config,
        budget=parse_count(args.budget),
        step=args.step,
        epochs_per_step=args.epochs_per_step,
        noise=args.noise,
        overrides=args.overrides,
    )
    done = run_search(plan, args.out, progress=not args.no_progress)
    print(
        f"widths {done['widths']}: {done['params']:,} parameters, validation score "
        f"{done['val_acc']:.4f} after {done['steps']} steps (log: {Path(args.out) / 'search.jsonl'})"
    )
    sets = " ".join(f"--set {shlex.quote(s)}" for s in [*args.overrides, done["set"]])
    print(f"train it with: collab train {shlex.quote(args.config)} {sets}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from analysis.probes.reconstruct import parse_classes, reconstruct, summary

    found = reconstruct(
        args.run,
        classes=parse_classes(args.classes),
        out=args.out,
        peer=args.peer,
        checkpoint=args.checkpoint,
    )
    print(summary(found, args.out))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from analysis.runs import list_runs, read_manifest

    found = list_runs(args.root)
    if not found:
        print(
            f"no runs under {args.root}; train one with `collab train` or rebuild the defaults with `collab zoo`"
        )
        return 0
    print(f"{'run':<28} {'method':<15} {'dataset':<10} {'peers':>5} {'test acc':>9}  status")
    for path in found:
        print(_run_line(path, read_manifest(path)))
    return 0


def _run_line(path: Path, m: dict | None) -> str:
    """One line of `collab runs`; a damaged manifest is marked, never fatal to the listing."""
    if m is None:
        return f"{path.name:<28} {'?':<15} {'?':<10} {'?':>5} {'-':>9}  broken: unreadable manifest.json"
    try:
        test = m.get("test_acc_at_best")  # at the epoch chosen on the validation split
        acc = f"{100 * test:.2f}%" if isinstance(test, (int, float)) else "-"
        peers = len(m["peer_names"]) if "peer_names" in m else "-"
        status = str(m.get("status", "unknown"))
        return f"{path.name:<28} {m.get('method', '?'):<15} {m.get('dataset', '-'):<10} {peers:>5} {acc:>9}  {status}"
    except (TypeError, ValueError):
        return f"{path.name:<28} {'?':<15} {'?':<10} {'?':>5} {'-':>9}  broken: malformed manifest.json"


def cmd_app(args: argparse.Namespace) -> int:
    entry = REPO / "app" / "main.py"
    if not entry.is_file():
        raise CollabError(
            f"the app is not found at {entry}; run `collab app` from a source checkout"
        )
    env = {**os.environ, "COLLAB_RUNS_ROOT": str(Path(args.root).resolve())}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(entry),
        "--server.address",
        args.address,
        "--server.port",
        str(args.port),
        "--browser.gatherUsageStats",
        "false",
        "--server.maxUploadSize",
        "64",
    ]
    # Become the Streamlit server (exec): a signal that stops `collab app` stops the server, and
    # no child is left behind.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


def cmd_zoo(args: argparse.Namespace) -> int:
    from analysis.training.zoo import build_zoo
    from analysis.viz.sweep import write_sweep_summary

    built = build_zoo(
        args.root, only=args.only, progress=not args.no_progress, summarize=write_sweep_summary
    )
    for path in built:
        print(f"rebuilt {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
