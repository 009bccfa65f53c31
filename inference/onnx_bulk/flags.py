"""A small absl-style flag layer on top of argparse.

The original benchmark used absl flags; its users type ``--flag value``,
``--flag=value``, ``--synthetic``/``--nosynthetic`` and ``-help``.  This
module accepts those spellings and prints help in absl's layout without
adding absl as a dependency.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Sequence

_KIND_NOTE = {"int": "(an integer)", "string": None, "bool": None}


@dataclass(frozen=True)
class Flag:
    """One command-line flag: name, absl kind ('int', 'string', 'bool'), default, help."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: int | None = None


def _default_text(flag: Flag) -> str:
    if flag.kind == "bool":
        return "'true'" if flag.default else "'false'"
    return f"'{flag.default}'"


def format_help(program: str, flags: Sequence[Flag]) -> str:
    """Render help the way absl prints it: flags sorted, default and kind on indented lines."""
    lines = ["", f"       USAGE: {program} [flags]", "flags:", "", f"{program}:"]
    for flag in sorted(flags, key=lambda f: f.name):
        shown = f"--[no]{flag.name}" if flag.kind == "bool" else f"--{flag.name}"
        lines.append(f"  {shown}: {flag.help}")
        lines.append(f"    (default: {_default_text(flag)})")
        note = _KIND_NOTE[flag.kind]
        if note:
            lines.append(f"    {note}")
    return "\n".join(lines) + "\n"


def _boolean(flag: Flag):
    def convert(text: str) -> bool:
        lowered = text.lower()
        if lowered in ("true", "t", "1", "yes"):
            return True
        if lowered in ("false", "f", "0", "no"):
            return False
        raise argparse.ArgumentTypeError(f"--{flag.name} takes true or false, got '{text}'")

    return convert


def _bounded_int(flag: Flag):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{flag.name} must be an integer, got '{text}'") from None
        if flag.minimum is not None and value < flag.minimum:
            raise argparse.ArgumentTypeError(f"--{flag.name} must be >= {flag.minimum}, got {value}")
        return value

    return convert


class _OneLineParser(argparse.ArgumentParser):
    """Report flag errors in one line, as absl does, instead of argparse's usage block."""

    def error(self, message: str):
        sys.stderr.write(f"error: Flags parsing error: {message}; run with -help to list the flags.\n")
        raise SystemExit(2)


def parse_flags(program: str, flags: Sequence[Flag], argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse argv with absl spellings; print help and exit 0 on -help/--help.

    Flags left at their default are listed in ``namespace._explicit`` as absent,
    so callers can resolve default paths relative to the script folder while
    resolving user-given paths relative to the working directory.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-help", "--help", "-h", "--helpshort", "-?") for arg in argv):
        sys.stdout.write(format_help(program, flags))
        raise SystemExit(0)

    parser = _OneLineParser(prog=program, add_help=False, allow_abbrev=False)
    for flag in flags:
        names = [f"--{flag.name}", f"-{flag.name}"]
        if flag.kind == "bool":
            parser.add_argument(
                *names, dest=flag.name, nargs="?", const=True, type=_boolean(flag), default=None
            )
            parser.add_argument(
                f"--no{flag.name}", f"-no{flag.name}", dest=flag.name, action="store_false", default=None
            )
        elif flag.kind == "int":
            parser.add_argument(*names, dest=flag.name, type=_bounded_int(flag), default=None)
        else:
            parser.add_argument(*names, dest=flag.name, type=str, default=None)
    namespace = parser.parse_args(argv)
    explicit = set()
    for flag in flags:
        if getattr(namespace, flag.name) is None:
            setattr(namespace, flag.name, flag.default)
        else:
            explicit.add(flag.name)
    namespace._explicit = frozenset(explicit)
    return namespace
