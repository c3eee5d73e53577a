"""The ``collab`` command line: parse, run the subcommand, turn errors and signals into one line.

The subcommands live in :mod:`analysis.commands`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from analysis.allocator import pin_allocator
from analysis.commands.parser import build_parser
from analysis.errors import CollabError


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that it stops the command like Ctrl-C does."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    pin_allocator()  # before torch allocates anything: faster no-grad passes on the CPU
    parser = build_parser()
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


if __name__ == "__main__":
    sys.exit(main())
