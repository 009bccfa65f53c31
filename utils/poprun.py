"""``poprun``-compatible launcher: instances round-robin over one or more hosts, each host's instances
started by a torch.distributed.run node launcher (c10d rendezvous on the first host).

    poprun --num-instances=4 --num-replicas=4 --ipus-per-replica=1 python run_benchmark.py ...
    poprun --host h1,h2 --num-instances=4 --num-replicas=8 python train.py ...

Instance i runs on host i mod H; replicas are divided between instances (popdist's variables tell each
program its share). Hosts other than this machine are reached with ``$POPRUN_SSH HOST COMMAND``
(default ``ssh -o BatchMode=yes``), in the same folder and with the same Python path, carrying only
poprun's variables and the ones named by ``--mpi-local-args="-x VAR"``. The first failing instance ends
the launch (named with its host and last lines); SIGINT/SIGTERM stop every instance on every host.
V-IPU and IPU-Link options are accepted and have no effect off IPU (said once).
Installed as the ``poprun`` command (pyproject.toml's console scripts).
"""

import argparse
import math
import os
import shlex
import shutil
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from cnns.utils import numa_binding
from cnns.utils.errors import DEBUG_ENV, UsageError, debug_from_environment, failure_sentence
from cnns.utils.poprun_launch import DEFAULT_REMOTE_SHELL, REMOTE_SHELL_ENV, Node, local_nodes, new_run_id, plan
from cnns.utils.poprun_supervisor import Launch
from cnns.utils.poprun_topology import Topology, describe, place
from cnns.utils.validation import writable_folder

NO_EFFECT_OFF_IPU = ("num_ilds", "vipu_server_host", "vipu_server_port", "vipu_server_timeout", "vipu_partition",
                     "reset_partition", "update_partition", "remove_partition")


class _Parser(argparse.ArgumentParser):
    """Errors are UsageErrors; ``debug_seen`` tells whether poprun's own ``--debug`` was read before one."""

    debug_seen = False

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message[0].upper()}{message[1:]}; run poprun -h for the options.")


class _Debug(argparse.Action):
    """``--debug`` before the program (one after it belongs to the program): tracebacks instead of one line."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: Optional[str] = None) -> None:
        setattr(namespace, self.dest, True)
        if isinstance(parser, _Parser):
            parser.debug_seen = True


def _yes_no(value: str) -> str:
    """poprun's yes/no options, also written 1/0 or true/false as in the SDK's examples."""
    word = str(value).strip().lower()
    table = {"yes": "yes", "1": "yes", "true": "yes", "no": "no", "0": "no", "false": "no"}
    if word not in table:
        raise argparse.ArgumentTypeError(f"invalid value {value!r} (accepted: yes, no, 1, 0, true, false)")
    return table[word]


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="poprun", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                allow_abbrev=False)
    a = p.add_argument
    a("-v", "--verbose", action="count", default=0, help="-v: the topology and each host's launch command; "
      "-vv: also torch.distributed.run's own log (LOGLEVEL=INFO)")
    a("--num-instances", type=int, default=1, help="Instances (processes), placed round-robin over the hosts")
    a("--num-replicas", type=int, default=None, help="Replicas in total, divided evenly between instances")
    a("--ipus-per-replica", type=int, default=1, help="Devices per replica; must equal each program's pipeline stages")
    a("--num-ilds", type=int, default=1, help="IPU-Link domains; no effect off IPU")
    a("--host", "--hosts", dest="hosts", default=None, help="Comma-separated hosts (default: this machine)")
    a("--numa-aware", default="no", type=_yes_no, help="yes (or 1): bind each instance's CPUs (and memory with "
      "numactl, on hosts with several NUMA nodes) to its share of the host")
    a("--mpi-global-args", default="", help="--tag-output prefixes each line with [1,K]<stdout>:; "
      "--allow-run-as-root is accepted; other MPI options are accepted with no effect (said once)")
    a("--mpi-local-args", default="", help="-x VAR or -x VAR=VALUE exports VAR to the instances on every host "
      "(remote hosts get only these and poprun's variables)")
    a("--vipu-server-host", default=None, help="No effect off IPU")
    a("--vipu-server-port", type=int, default=None, help="No effect off IPU")
    a("--vipu-server-timeout", type=float, default=None, help="No effect off IPU")
    a("--vipu-partition", default=None, help="No effect off IPU")
    a("--reset-partition", default=None, help="No effect off IPU")
    a("--update-partition", default=None, help="No effect off IPU")
    a("--remove-partition", default=None, help="No effect off IPU")
    a("--print-topology", nargs="?", const="yes", default="no", type=_yes_no,
      help="Print the instances, hosts, replicas and devices this launch uses; with no program, exit after")
    a("--executable-cache-path", default=None, help="The programs' model cache path (their --model-cache-path)")
    a("--only-output-from-instance", type=int, default=None, help="Show only this instance's output")
    a("--max-restarts", type=int, default=0, help="Elastic restarts: after an instance fails, every instance on "
      "every host is started again, up to N times, with a fresh rendezvous and the same launch id (training "
      "resumes from the last checkpoint of this launch)")
    a("--debug", action=_Debug, help=f"Show poprun's Python traceback of a failure instead of one error line "
      f"(also {DEBUG_ENV}=1); a --debug after the program is the program's")
    a("program", nargs=argparse.REMAINDER, help="Command run by every instance")
    return p


def check(args: argparse.Namespace) -> Topology:
    """Values argparse cannot check, each a one-sentence UsageError; returns where instances go."""
    for name in ("num_instances", "ipus_per_replica", "num_ilds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    replicas = args.num_instances if args.num_replicas is None else args.num_replicas
    if replicas < 1:
        raise UsageError(f"--num-replicas must be at least 1, got {replicas}.")
    if replicas % args.num_instances:
        raise UsageError(f"--num-replicas {replicas} does not divide between {args.num_instances} instances; "
                         f"give a multiple of {args.num_instances}.")
    only = args.only_output_from_instance
    if only is not None and not 0 <= only < args.num_instances:
        raise UsageError(f"--only-output-from-instance {only} is not an instance of this launch; accepted: "
                         f"0 to {args.num_instances - 1}.")
    if args.max_restarts < 0:
        raise UsageError(f"--max-restarts must be 0 or more, got {args.max_restarts}.")
    if args.vipu_server_port is not None and not 0 < args.vipu_server_port < 65536:
        raise UsageError(f"--vipu-server-port {args.vipu_server_port} is not a port; accepted: 1 to 65535.")
    if args.vipu_server_timeout is not None and not 0 < args.vipu_server_timeout < math.inf:
        raise UsageError(f"--vipu-server-timeout must be a positive number of seconds, got {args.vipu_server_timeout}.")
    hosts = [h.strip() for h in ("localhost" if args.hosts is None else args.hosts).split(",")]
    if not all(hosts):
        raise UsageError(f"--host {args.hosts!r} has an empty host name; give comma-separated names, e.g. h1,h2.")
    if not args.program and args.print_topology != "yes":
        raise UsageError("no program given; usage: poprun [options] python script.py [args].")
    here = local_nodes(hosts)
    if any(here):
        _check_local_paths(args)
    if args.program and not all(here):
        _check_remote_shell()
    return place(hosts, args.num_instances, replicas, args.ipus_per_replica)


def _check_local_paths(args: argparse.Namespace) -> None:
    """What this machine's instances need: the program to start and a writable cache folder."""
    if args.program and shutil.which(args.program[0]) is None:
        raise UsageError(f"program {args.program[0]!r} is not an executable on this machine's PATH; give an "
                         f"installed program such as python.")
    if args.executable_cache_path:
        writable_folder(args.executable_cache_path, "--executable-cache-path")


def _check_remote_shell() -> None:
    """Hosts other than this machine are reached through the remote shell; it must be there to start."""
    shell = shlex.split(os.environ.get(REMOTE_SHELL_ENV) or DEFAULT_REMOTE_SHELL)
    if not shell or shutil.which(shell[0]) is None:
        raise UsageError(f"the remote shell {' '.join(shell) or repr('')} (${REMOTE_SHELL_ENV}) is not an executable "
                         f"on this machine's PATH; install ssh or set ${REMOTE_SHELL_ENV} to a command that runs a "
                         f"command on a host.")


def mpi_exports(local_args: str) -> Tuple[Dict[str, str], List[str]]:
    """-x VAR / -x VAR=VALUE from --mpi-local-args (values from this environment), and the tokens ignored."""
    tokens, out, ignored = shlex.split(local_args), {}, []
    i = 0
    while i < len(tokens):
        if tokens[i] == "-x" and i + 1 < len(tokens):
            name, eq, value = tokens[i + 1].partition("=")
            if eq:
                out[name] = value
            elif name in os.environ:
                out[name] = os.environ[name]
            i += 2
        else:
            ignored.append(tokens[i])
            i += 1
    return out, ignored


def notes_for(args: argparse.Namespace, ignored_local: List[str]) -> List[str]:
    given = [n for n in NO_EFFECT_OFF_IPU if getattr(args, n) is not None and not (n == "num_ilds" and args.num_ilds == 1)]
    notes = [f"--{n.replace('_', '-')} has no effect off IPU" for n in given]
    global_ignored = [t for t in shlex.split(args.mpi_global_args) if t not in ("--tag-output", "--allow-run-as-root")]
    if global_ignored:
        notes.append(f"--mpi-global-args {' '.join(global_ignored)}: no equivalent off MPI, no effect")
    if ignored_local:
        notes.append(f"--mpi-local-args {' '.join(ignored_local)}: no equivalent off MPI, no effect")
    return notes


def shared_environment(args: argparse.Namespace, topo: Topology) -> Dict[str, str]:
    """popdist's variables (read by utils.distributed in the programs) and the instance wrapper's settings."""
    env = {"POPDIST_NUM_INSTANCES": str(len(topo.instances)), "POPDIST_NUM_TOTAL_REPLICAS": str(topo.replicas),
           "POPDIST_NUM_LOCAL_REPLICAS": str(topo.local_replicas),
           "POPDIST_NUM_IPUS_PER_REPLICA": str(topo.ipus_per_replica),
           "POPRUN_NUM_HOSTS": str(len(topo.hosts)), "POPRUN_NUMA": args.numa_aware,
           "POPRUN_TAG_OUTPUT": "1" if "--tag-output" in shlex.split(args.mpi_global_args) else "0",
           "POPRUN_ONLY_OUTPUT_FROM": "" if args.only_output_from_instance is None else str(args.only_output_from_instance),
           "HARNESS_RUN_NAME": os.environ.get("HARNESS_RUN_NAME", f"poprun_{os.getpid()}")}
    if args.executable_cache_path:
        env["POPDIST_EXECUTABLE_CACHE_PATH"] = os.path.abspath(args.executable_cache_path)
    if args.verbose >= 2:
        env["LOGLEVEL"] = "INFO"
    return env


def topology_lines(args: argparse.Namespace, topo: Topology) -> List[str]:
    here = local_nodes(topo.hosts)
    cpus = []
    for inst in topo.instances:
        if args.numa_aware != "yes":
            cpus.append("all of the host's")
        else:
            b = numa_binding.plan(inst.local_index, len(topo.on_node(inst.node)))
            cpus.append(",".join(map(str, b.cpus)) + ("" if here[inst.node] else " (as on this machine)"))
    return describe(topo, cpus)


def prepare(argv: Optional[Sequence[str]] = None, p: Optional[argparse.ArgumentParser] = None,
            ) -> Tuple[argparse.Namespace, Topology, Callable[[], List[Node]], List[str]]:
    """Parse (with ``p``, default a new parser) and check the command line; the topology, a maker of the
    per-host launch plan (called again for each restart) and the notes to print."""
    args = (p or parser()).parse_args(argv)
    topo = check(args)
    exported, ignored = mpi_exports(args.mpi_local_args)
    env, run_id = shared_environment(args, topo), new_run_id()
    return args, topo, lambda: plan(topo, args.program, env, exported, run_id), notes_for(args, ignored)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """poprun's command: usage errors exit 2 and failures 1, each with one ``error:`` line, unless
    ``--debug`` (before the program) or ``HARNESS_DEBUG=1`` asks for the traceback."""
    p = parser()
    try:
        args, topo, make_nodes, notes = prepare(argv, p)
    except UsageError as exc:
        if getattr(p, "debug_seen", False) or debug_from_environment():
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _launch(args, topo, make_nodes, notes)
    except Exception as error:  # noqa: BLE001 - one sentence, not a traceback, unless asked for
        if args.debug or debug_from_environment():
            raise
        print(f"error: poprun could not run the launch: {failure_sentence(error)}", file=sys.stderr)
        return 1


def _launch(args: argparse.Namespace, topo: Topology, make_nodes: Callable[[], List[Node]], notes: List[str]) -> int:
    """Print what was asked for and run the launch; returns poprun's exit code."""
    if args.print_topology == "yes":
        print("\n".join(topology_lines(args, topo)), flush=True)
        if not args.program:
            return 0
    for note in notes:
        print(f"poprun: {note}", file=sys.stderr)
    nodes = make_nodes()
    if args.verbose:
        print("\n".join(f"poprun: {line}" for line in topology_lines(args, topo)), file=sys.stderr)
        for node in nodes:
            how = "here" if node.local else f"through {os.environ.get(REMOTE_SHELL_ENV) or 'ssh'}"
            print(f"poprun: host {node.host} (node {node.index}, {how}): {shlex.join(node.command)}", file=sys.stderr)
    sys.stderr.flush()
    return Launch(nodes, make_nodes, args.max_restarts).run()


if __name__ == "__main__":
    sys.exit(main())
