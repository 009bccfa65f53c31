"""poprun's agent on one host: runs that host's torch.distributed.run node launcher and stops it, with
every process under it, when poprun says so (a signal) or goes away (its stdin closes, which is also
how a host reached over ssh learns that poprun stopped). Internal to poprun:
``python -m cnns.utils.poprun_node LOCAL_INSTANCES GRACE_S -- TORCHRUN_COMMAND...``."""

import os
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional

from cnns.utils import numa_binding, process_tree

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KEPT_CPP_LOG_LEVEL = "POPRUN_TORCH_CPP_LOG_LEVEL"


def threads_per_instance(local_instances: int) -> int:
    return max(1, len(numa_binding.allowed_cpus()) // max(1, local_instances))


def watch_stdin(stop: threading.Event, reason: List[int]) -> None:
    """poprun holds this pipe open for the whole launch; end of file means stop."""
    try:
        for _ in iter(lambda: os.read(0, 4096), b""):  # raw reads: no buffer lock held at interpreter exit
            pass
    except (OSError, ValueError):
        pass
    reason.append(signal.SIGTERM)
    stop.set()


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    local_instances, grace = int(argv[0]), float(argv[1])
    command = argv[argv.index("--") + 1:]
    process_tree.become_subreaper()
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_instance(local_instances)))
    # The launchers' own C++ warnings (a rendezvous store closing while a peer host shuts down) are
    # noise; the instances get the user's setting back (poprun_instance.py).
    env[KEPT_CPP_LOG_LEVEL] = env.get("TORCH_CPP_LOG_LEVEL", "")
    env["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    stop = threading.Event()
    reason: List[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        reason.append(signum)
        stop.set()
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    launcher = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    threading.Thread(target=watch_stdin, args=(stop, reason), daemon=True).start()
    while launcher.poll() is None and not stop.wait(0.2):
        pass
    if launcher.poll() is not None:
        code = launcher.returncode
        process_tree.kill_descendants(os.getpid(), grace_s=2.0)
        return code if code >= 0 else 128 - code
    launcher.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process_tree.kill_descendants(os.getpid(), grace_s=max(0.0, deadline - time.monotonic()))
    return 128 + (reason[0] if reason else signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
