"""``collab eval``, ``analyze``, ``import``, ``reconstruct``, ``runs`` and ``app``: the commands
that read, extend and show runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from analysis.commands.paths import REPO
from analysis.errors import CollabError


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
