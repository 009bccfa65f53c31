"""The run's log folder: app.json (all options), log.txt (everything printed) and results.json.

JSON files are written atomically. results.json exists from the start with status "running" (and the
process id and host), so a run killed with SIGKILL leaves a folder that says it never finished; a run
that fails replaces it with status "failed" and the error, one that ends with status "completed"."""
from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import time
from typing import Any, Dict, Optional

from . import atomic
from .distributed import InstanceInfo
from .errors import on_failure


def run_folder_name(args: Any) -> str:
    """``<model>_bs<B>_<precision>fp_r<R>_di<D>_<rand>`` as docs/DESIGN.md §4."""
    return (f"{args.model}_bs{args.batch_size}_{args.precision}fp_r{args.replicas}"
            f"_di{args.device_iterations}_{secrets.token_hex(3)}")


class RunLogger:
    """Prints to stdout and log.txt; only instance 0 of a multi-instance run writes app/results files."""

    def __init__(self, args: Any, info: InstanceInfo, folder: Optional[str] = None) -> None:
        self.info = info
        root = getattr(args, "log_path", "logs")
        name = folder or run_folder_name(args)
        if info.distributed and folder is None:
            name = os.environ.get("HARNESS_RUN_NAME", name)
        self.path = os.path.join(root, name)
        os.makedirs(self.path, exist_ok=True)
        self._said: set = set()
        log_name = "log.txt" if info.rank == 0 else f"log_instance{info.rank}.txt"
        self._logger = logging.getLogger(f"harness.{id(self)}")
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        fmt = logging.Formatter("%(message)s")
        for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(os.path.join(self.path, log_name))):
            handler.setFormatter(fmt)
            self._logger.addHandler(handler)
        self._unregister = on_failure(self.record_failure)
        if info.rank == 0:
            self.write_json("app.json", _jsonable(vars(args)))
            self.write_json("results.json", {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
                                             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def log(self, message: str) -> None:
        self._logger.info(message)

    def once(self, message: str) -> None:
        """Log a message the first time it is seen (e.g. options with no effect), from instance 0 only."""
        if message not in self._said and self.info.rank == 0:
            self._said.add(message)
            self.log(message)

    def write_json(self, name: str, data: Dict[str, Any]) -> None:
        atomic.write_json(os.path.join(self.path, name), data)

    def write_results(self, results: Dict[str, Any]) -> None:
        """The finished run's results.json, status "completed" (instance 0 only)."""
        if self.info.rank == 0:
            self.write_json("results.json", {"status": "completed", **results})

    def record_failure(self, message: str) -> None:
        """The run ended with ``message``: said in log.txt, and results.json records it (instance 0)."""
        files_only = [h for h in self._logger.handlers if isinstance(h, logging.FileHandler)]
        self._logger.handlers = files_only  # stderr already gets the error line
        self.log(f"error: {message}")
        if self.info.rank == 0:
            self.write_json("results.json", {"status": "failed", "error": message})
        self.close()

    def close(self) -> None:
        self._unregister()
        for handler in list(self._logger.handlers):
            handler.close()
            self._logger.removeHandler(handler)


def _jsonable(d: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(json.dumps(d, default=str))
