"""One poprun instance, started by torch.distributed.run on its host: sets the popdist identity
(round-robin instance index, replica offset), binds CPUs with ``--numa-aware yes``, runs the program,
tags or filters its output, and when the program fails says which instance, on which host, and its
last lines. Internal to poprun: ``python -m cnns.utils.poprun_instance PROGRAM [ARGS]``."""

import collections
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Deque, List, Optional

from cnns.utils import numa_binding
from cnns.utils.errors import describe_exit
from cnns.utils.poprun_topology import instance_index

LAST_LINES = 15
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PROGRAM_NOT_STARTED = 127  # the shell's code for a command that cannot be found or run


def instance_environment(env: dict) -> dict:
    """The program's environment: torch.distributed.run's rank replaced by the popdist instance index,
    which poprun places round-robin over hosts (torch.distributed.run numbers each host's ranks together)."""
    env = dict(env)
    hosts, node, local = int(env["POPRUN_NUM_HOSTS"]), int(env["POPRUN_NODE"]), int(env["LOCAL_RANK"])
    index = instance_index(node, local, hosts)
    env["RANK"] = env["POPDIST_INSTANCE_INDEX"] = str(index)
    env["POPDIST_REPLICA_INDEX_OFFSET"] = str(index * int(env["POPDIST_NUM_LOCAL_REPLICAS"]))
    env["PYTHONUNBUFFERED"] = "1"
    kept = env.pop("POPRUN_TORCH_CPP_LOG_LEVEL", None)
    if kept is not None:
        env.pop("TORCH_CPP_LOG_LEVEL", None)
        if kept:
            env["TORCH_CPP_LOG_LEVEL"] = kept
    return env


def program_command(program: List[str]) -> List[str]:
    """``python x.py`` runs with this interpreter (the one poprun and torch.distributed.run use)."""
    if program and os.path.basename(program[0]).startswith("python"):
        return [sys.executable] + program[1:]
    return list(program)


class Output:
    """Forwards the program's lines (tagged ``[1,K]<stdout>:`` as Open MPI's --tag-output, or dropped when
    another instance was chosen with --only-output-from-instance) and keeps its last lines."""

    def __init__(self, index: int, tag: bool, shown: bool) -> None:
        self.index, self.tag, self.shown = index, tag, shown
        self.lock = threading.Lock()
        self.last: Deque[str] = collections.deque(maxlen=LAST_LINES)
        self.last_stdout: Deque[str] = collections.deque(maxlen=LAST_LINES)

    def pump(self, source: IO[bytes], name: str, sink: IO[bytes]) -> None:
        prefix = f"[1,{self.index}]<{name}>:".encode() if self.tag else b""
        for line in iter(source.readline, b""):
            (self.last if name == "stderr" else self.last_stdout).append(line.decode(errors="replace").rstrip())
            if self.shown:
                with self.lock:
                    sink.write(prefix + line)
                    sink.flush()

    def tail(self) -> List[str]:
        return list(self.last or self.last_stdout)


def main(argv: Optional[List[str]] = None) -> int:
    program = program_command(list(sys.argv[1:] if argv is None else argv))
    env = instance_environment(dict(os.environ))
    index, host = int(env["POPDIST_INSTANCE_INDEX"]), env.get("POPRUN_HOST", "?")
    only = env.get("POPRUN_ONLY_OUTPUT_FROM", "")
    out = Output(index, env.get("POPRUN_TAG_OUTPUT") == "1", only in ("", str(index)))
    if env.get("POPRUN_NUMA") == "yes":
        binding = numa_binding.plan(int(env["LOCAL_RANK"]), int(env.get("LOCAL_WORLD_SIZE", "1")))
        if not binding.prefix and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, binding.cpus)
        program = binding.prefix + program
        print(f"poprun: instance {index} on host {host}: {binding.note}", file=sys.stderr, flush=True)
    stopping: List[int] = []
    try:
        proc = subprocess.Popen(program, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as error:
        print(f"poprun: instance {index} on host {host} could not start {program[0]!r} "
              f"({error.strerror or error}).", file=sys.stderr, flush=True)
        return PROGRAM_NOT_STARTED

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)
    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    pumps = [threading.Thread(target=out.pump, args=(proc.stdout, "stdout", sys.stdout.buffer), daemon=True),
             threading.Thread(target=out.pump, args=(proc.stderr, "stderr", sys.stderr.buffer), daemon=True)]
    for t in pumps:
        t.start()
    code = proc.wait()
    for t in pumps:
        t.join(timeout=5)
    if code != 0 and not stopping:
        lines = [f"poprun: instance {index} on host {host} {describe_exit(code)}; its last lines:"]
        lines += [f"poprun:   | {line}" for line in out.tail()] or ["poprun:   | (no output)"]
        print("\n".join(lines), file=sys.stderr, flush=True)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
