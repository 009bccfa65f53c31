"""Option values that come from files (YAML presets, checkpoint ``args``) checked like typed flags.

A preset or a checkpoint is input too: a string where a number belongs or a list where one value
belongs must stop the run with one sentence, not a TypeError deep in the code.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict

import yaml

from .errors import UsageError

_LIST_NARGS = ("+", "*")


def load_yaml_mapping(path: str) -> Dict[str, Any]:
    """A YAML file whose top level is a mapping; syntax errors name the file and line."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise UsageError(f"{path} is not valid YAML ({problem}{where}).") from None
    except OSError as error:
        raise UsageError(f"{path} cannot be read ({error.strerror or error}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} must map preset names to option mappings, but its top level is a "
                         f"{type(data).__name__}.")
    return data


def checked_value(action: argparse.Action, value: Any, source: str, key: str) -> Any:
    """``value`` converted by the option's type and checked against its choices and arity."""
    if value is None:
        return None
    what = f"{source} sets {key} to {value!r}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{what}; accepted: true or false.")
        return value
    many = action.nargs in _LIST_NARGS or isinstance(action.nargs, int)
    if many:
        items = value if isinstance(value, list) else [value]
        if isinstance(action.nargs, int) and len(items) != action.nargs:
            raise UsageError(f"{what}; accepted: a list of {action.nargs} values.")
        return [_one(action, item, what) for item in items]
    if isinstance(value, (list, dict)):
        raise UsageError(f"{what}; accepted: a single value.")
    return _one(action, value, what)


def _one(action: argparse.Action, value: Any, what: str) -> Any:
    convert = action.type
    if isinstance(value, (list, dict)):
        raise UsageError(f"{what}; accepted: plain values, not nested lists or mappings.")
    if convert is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
        raise UsageError(f"{what}; accepted: an integer.")
    if convert is float and isinstance(value, bool):
        raise UsageError(f"{what}; accepted: a number.")
    if convert is not None:
        try:
            value = convert(value)
        except (TypeError, ValueError):
            kind = {int: "an integer", float: "a number"}.get(convert, getattr(convert, "__name__", "a value"))
            raise UsageError(f"{what}; accepted: {kind}.") from None
    if action.choices is not None and value not in action.choices:
        raise UsageError(f"{what}; accepted: {', '.join(map(str, action.choices))}.")
    return value


def checked_mapping(parser: argparse.ArgumentParser, values: Dict[str, Any], source: str,
                    unknown_allowed: bool) -> Dict[str, Any]:
    """Each key that names an option is converted and checked; unknown keys are refused unless allowed
    (a checkpoint also records values the scripts derived, a preset holds only options)."""
    if not isinstance(values, dict):
        raise UsageError(f"{source} must be a mapping of option names to values, got {type(values).__name__} "
                         f"{values!r}.")
    actions = {a.dest: a for a in parser._actions}
    out: Dict[str, Any] = {}
    for key, value in values.items():
        dest = str(key).replace("-", "_")
        if dest not in actions or dest in ("help", "config"):
            if unknown_allowed:
                out[dest] = value
                continue
            raise UsageError(f"{source} has unknown key {key!r}; keys must be option names such as "
                             f"batch_size, model, precision.")
        out[dest] = checked_value(actions[dest], value, source, str(key))
    return out
