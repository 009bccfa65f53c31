"""poprun's supervision of its node launchers: their output is relayed, the first failure stops every
host and is named (instance, host, last lines), and SIGINT/SIGTERM sent to poprun reach every instance
on every host, which are waited for (grace period, then SIGKILL) before poprun exits 130/143."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Callable, List, Optional, Set, Tuple

from . import process_tree
from .poprun_launch import NODE_GRACE_S, Node

STOP_GRACE_S = NODE_GRACE_S + 5.0
TAG = re.compile(r"^\[1,\d+\]<std(?:out|err)>:")
FAILURE = re.compile(r"^poprun: instance (\d+) on host (\S+) (.+?); its last lines:$")


class Launch:
    def __init__(self, nodes: List[Node], make_nodes: Callable[[], List[Node]], max_restarts: int = 0) -> None:
        self.nodes = nodes
        self.make_nodes = make_nodes
        self.max_restarts = max_restarts
        self.signal: Optional[int] = None
        self.lock = threading.Lock()
        self.errors: Set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self.procs: List[subprocess.Popen] = []
        self.pumps: List[threading.Thread] = []
        self.failures: List[str] = []
        self.failure_codes: List[int] = []

    def _pump(self, source: IO[bytes], sink: IO[bytes], scan: bool) -> None:
        for line in iter(source.readline, b""):
            if scan:
                text = line.decode(errors="replace").rstrip()
                error = TAG.sub("", text)
                if error.startswith("error: "):  # a usage error every instance found: said once
                    if error in self.errors:
                        continue
                    self.errors.add(error)
                match = FAILURE.match(text)
                if match:
                    self.failures.append(f"instance {match[1]} on host {match[2]} {match[3]}")
                    code = re.match(r"exited with code (\d+)", match[3])
                    self.failure_codes.append(int(code[1]) if code else 1)
            with self.lock:
                sink.write(line)
                sink.flush()

    def start(self) -> None:
        for node in self.nodes:
            proc = subprocess.Popen(node.command, env=node.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
            self.procs.append(proc)
            for source, sink, scan in ((proc.stdout, sys.stdout.buffer, False), (proc.stderr, sys.stderr.buffer, True)):
                t = threading.Thread(target=self._pump, args=(source, sink, scan), daemon=True)
                t.start()
                self.pumps.append(t)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.signal is None:
            self.signal = signum

    def stop(self) -> None:
        """Close every node's stdin (a remote agent's only news of poprun), SIGTERM the local processes,
        wait the grace period, then SIGKILL whatever is left under poprun."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                    proc.send_signal(signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + STOP_GRACE_S
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        process_tree.kill_descendants(os.getpid(), grace_s=0.0)

    def _wait(self) -> Optional[int]:
        """Until a signal arrives (None), every node succeeds (None) or one fails (its position)."""
        while self.signal is None:
            codes = [p.poll() for p in self.procs]
            failed = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
            if failed is not None:
                return failed
            if all(c == 0 for c in codes):
                return None
            time.sleep(0.2)
        return None

    def run(self) -> int:
        """Start every node and wait, restarting the whole launch after a failure while restarts are left;
        returns poprun's exit code."""
        process_tree.become_subreaper()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        for attempt in range(self.max_restarts + 1):
            if attempt:
                self.nodes = self.make_nodes()
                self._reset()
            self.start()
            failed = self._wait()
            if self.signal is not None:
                name = signal.Signals(self.signal).name
                print(f"poprun: {name} received; stopping every instance on every host.", file=sys.stderr, flush=True)
                self.stop()
                self._drain()
                return 128 + self.signal
            if failed is None:
                self._drain()
                return 0
            self._drain(only=failed)
            self.stop()
            self._drain()
            if attempt < self.max_restarts:
                print(f"poprun: {self._failure(failed)[0]}; restarting every instance on every host "
                      f"(restart {attempt + 1} of {self.max_restarts}).", file=sys.stderr, flush=True)
        return self._report(failed)

    def _drain(self, only: Optional[int] = None) -> None:
        pumps = self.pumps if only is None else self.pumps[2 * only:2 * only + 2]
        for t in pumps:
            t.join(timeout=5)

    def _failure(self, failed: int) -> Tuple[str, int]:
        """What failed, in words, and the exit code to pass on."""
        node, code = self.nodes[failed], self.procs[failed].returncode
        if self.failures:
            return f"{self.failures[0]} (its last lines are above)", self.failure_codes[0]
        via = "" if node.local else " (through the remote shell)"
        return f"the node launcher on host {node.host}{via} exited with code {code}", code

    def _report(self, failed: int) -> int:
        what, code = self._failure(failed)
        print(f"poprun: the launch failed: {what}; every other instance was stopped.", file=sys.stderr, flush=True)
        return code if 0 < code < 128 else 1
