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


def machine_line() -> str:
    """Where and under what load a figure was taken: CPUs, load averages, torch and threads."""
    import os
    import platform
    import time

    try:
        one, five, fifteen = os.getloadavg()
        load = f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"
    except OSError:
        load = "load average unknown"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, {load}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def load_now() -> str:
    """The 1-minute load average, printed beside each timed figure."""
    import os

    try:
        return f"load {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load ?"


class Markdown:
    """Lines a bench prints, kept to be written as a markdown file under docs/ (``--markdown``),
    headed by the command that made them and the machine it ran on."""

    def __init__(self, title: str) -> None:
        import sys

        self.lines = [f"# {title}", "", f"Written by `python {' '.join(sys.argv)}` on "
                      f"{machine_line()}.", ""]  # fmt: skip

    def print(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self, path: str | None) -> None:
        if not path:
            return
        from pathlib import Path

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(self.lines).rstrip() + "\n", encoding="utf-8")
        print(f"written: {out}")


def add_markdown(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--markdown", metavar="PATH", default=None,
                    help="also write the table as markdown to PATH (e.g. docs/results/...md)")  # fmt: skip
