"""The ``collab`` argument parser: every subcommand, its options and the function it runs."""

from __future__ import annotations

import argparse

from analysis.commands.explore import (
    cmd_analyze,
    cmd_app,
    cmd_eval,
    cmd_import,
    cmd_reconstruct,
    cmd_runs,
)
from analysis.commands.paths import REPO
from analysis.commands.train import cmd_search, cmd_sweep, cmd_train, cmd_zoo


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


def build_parser() -> argparse.ArgumentParser:
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
