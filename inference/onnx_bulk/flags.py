"""The launcher's flags, parsed with absl-py as the original Graphcore benchmark did.

Users of the original type ``--flag value``, ``--flag=value``, ``-flag value``,
``--synthetic``/``--nosynthetic`` and ``-help``; absl accepts all of these.
What absl does not give is this project's error contract, so parsing errors
become one ``UsageError`` sentence (``error: ...``, exit 2) instead of absl's
usage dump, and help is printed and exits 0 without absl's ``app.run``.
A fresh ``FlagValues`` per parse keeps absl's process-wide ``FLAGS`` untouched.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

from absl import flags as absl_flags

from cnns.utils.errors import UsageError

HELP_SPELLINGS = ("-help", "--help", "-h", "--helpshort", "-?")
_DEFINE = {
    "int": absl_flags.DEFINE_integer,
    "string": absl_flags.DEFINE_string,
    "bool": absl_flags.DEFINE_boolean,
}


@dataclass(frozen=True)
class Flag:
    """One command-line flag: name, absl kind ('int', 'string', 'bool'), default, help, optional minimum."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: int | None = None


def define(flags: Sequence[Flag]) -> absl_flags.FlagValues:
    """A fresh absl ``FlagValues`` holding ``flags``; a minimum is a validator, so help stays absl's
    plain ``(an integer)`` as in the original, and a value below it is named in the error."""
    values = absl_flags.FlagValues()
    for flag in flags:
        _DEFINE[flag.kind](flag.name, flag.default, flag.help, flag_values=values)
        if flag.minimum is not None:
            absl_flags.register_validator(
                flag.name,
                lambda value, minimum=flag.minimum: value >= minimum,
                message=f"--{flag.name} must be >= {flag.minimum}",
                flag_values=values,
            )
    return values


def format_help(program: str, values: absl_flags.FlagValues) -> str:
    """absl's own flag listing, headed by the program's name as absl's ``app`` heads it (absl files the
    flags under this module, which defined them)."""
    listing = values.module_help(__name__).lstrip("\n")
    body = listing.split("\n", 1)[1]
    return f"\n       USAGE: {program} [flags]\nflags:\n\n{program}:\n{body}\n"


def parse_flags(program: str, flags: Sequence[Flag], argv: Sequence[str] | None = None) -> absl_flags.FlagValues:
    """Parse argv (without the program name) with absl; help exits 0, a bad flag raises UsageError.

    ``values[name].present`` tells a flag given on the command line from one left at its default, so
    callers resolve default paths relative to the script folder and given ones to the working directory.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    values = define(flags)
    if any(arg in HELP_SPELLINGS for arg in argv):
        sys.stdout.write(format_help(program, values))
        raise SystemExit(0)
    try:
        rest = values([program, *argv])[1:]
    except absl_flags.Error as error:
        raise UsageError(f"Flags parsing error: {error}; run with -help to list the flags.") from None
    if rest:
        raise UsageError(f"Flags parsing error: unexpected argument {rest[0]!r} (flags only); "
                         "run with -help to list the flags.")
    return values
