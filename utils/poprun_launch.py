"""poprun's launch plan: one torch.distributed.run node launcher per host (c10d rendezvous on the first
host), started here for this machine and through a remote shell for the others, as MPI launchers do."""
from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import sys
import uuid
from typing import Dict, List, Optional

from .poprun_topology import Topology

# Started as installed modules (python -m), so every process finds the package the same way on every host.
NODE_AGENT = "cnns.utils.poprun_node"
INSTANCE = "cnns.utils.poprun_instance"
NODE_LAUNCHER = "cnns.utils.node_launcher"
REMOTE_SHELL_ENV = "POPRUN_SSH"      # command that runs a command on a host: "$POPRUN_SSH HOST 'COMMAND'"
DEFAULT_REMOTE_SHELL = "ssh -o BatchMode=yes"
DEFAULT_RDZV_PORT = 29400
NODE_GRACE_S = 10.0


@dataclasses.dataclass
class Node:
    index: int
    host: str
    local: bool
    command: List[str]
    env: Dict[str, str]   # the whole environment for a local node; only what is exported for a remote one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_this_machine(host: str) -> bool:
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    if host in names:
        return True
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    return address.startswith("127.") or address == _own_address()


def _own_address() -> Optional[str]:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def local_nodes(hosts: List[str]) -> List[bool]:
    """The first host naming this machine runs here; every other host, including a second entry naming
    this machine (two nodes on one machine), is reached through the remote shell."""
    out, seen = [], False
    for host in hosts:
        here = not seen and is_this_machine(host)
        seen = seen or here
        out.append(here)
    return out


def torchrun_command(topo: Topology, node: int, endpoint: str, run_id: str, program: List[str]) -> List[str]:
    """torch.distributed.run's own restarts stay off: it counts them per host, and its workers' store keys
    go stale when only one host restarts; poprun restarts the whole launch instead (Launch.run)."""
    nodes_used = len({i.node for i in topo.instances})
    return [sys.executable, "-m", NODE_LAUNCHER, f"--nnodes={nodes_used}",
            f"--nproc-per-node={len(topo.on_node(node))}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={run_id}", f"--rdzv-conf=is_host={'true' if node == 0 else 'false'}",
            f"--local-addr={topo.hosts[node]}", "--max-restarts=0", "--monitor-interval=0.5",
            "--module", INSTANCE, *program]


def node_agent_command(local_instances: int, torchrun: List[str]) -> List[str]:
    return [sys.executable, "-m", NODE_AGENT, str(local_instances), str(NODE_GRACE_S), "--", *torchrun]


def remote_command(host: str, env: Dict[str, str], command: List[str]) -> List[str]:
    """``ssh HOST 'cd CWD && env VAR=... COMMAND'``: same folder and interpreter path on every host."""
    exports = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    line = f"cd {shlex.quote(os.getcwd())} && exec env {exports} {shlex.join(command)}"
    return shlex.split(os.environ.get(REMOTE_SHELL_ENV) or DEFAULT_REMOTE_SHELL) + [host, line]


def new_run_id() -> str:
    return f"poprun-{uuid.uuid4().hex[:12]}"


def plan(topo: Topology, program: List[str], shared_env: Dict[str, str], exported: Dict[str, str],
         run_id: str) -> List[Node]:
    """One Node per host with instances; ``shared_env`` goes to every host, ``exported`` (-x VAR) too.
    Each call draws a fresh rendezvous port; ``run_id`` stays the launch's across restarts (training
    resumes from checkpoints carrying it)."""
    used = sorted({i.node for i in topo.instances})
    here = local_nodes(topo.hosts)
    port = free_port() if here[0] else DEFAULT_RDZV_PORT
    endpoint = f"{topo.hosts[0]}:{port}"
    nodes = []
    for node in used:
        node_env = {**shared_env, **exported, "POPRUN_NODE": str(node), "POPRUN_HOST": topo.hosts[node]}
        agent = node_agent_command(len(topo.on_node(node)),
                                   torchrun_command(topo, node, endpoint, run_id, program))
        if here[node]:
            nodes.append(Node(node, topo.hosts[node], True, agent, {**os.environ, **node_env}))
        else:
            nodes.append(Node(node, topo.hosts[node], False, remote_command(topo.hosts[node], node_env, agent),
                              dict(os.environ)))
    return nodes
