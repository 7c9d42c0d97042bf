"""What several benchmark scripts share: a parser built from the script's docstring, and the
option that sets torch's CPU threads."""

from __future__ import annotations

import argparse

import torch


def parser(doc: str, *, epilog: bool = False) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line; with ``epilog`` the rest follows ``--help``
    as written (usage examples, tables)."""
    lines = doc.splitlines()
    if not epilog:
        return argparse.ArgumentParser(description=lines[0])
    return argparse.ArgumentParser(
        description=lines[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(lines[1:]),
    )


def add_threads(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")


def use_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (0 leaves torch's choice)."""
    if args.threads:
        torch.set_num_threads(args.threads)
