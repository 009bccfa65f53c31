"""torch.distributed.run for poprun's node agents: the same launcher, ending with an exit code and one
line instead of a Python traceback when an instance fails or the launch is stopped by a signal (the
failing instance has already been named, with its last lines, by poprun_instance.py). Its per-run log
folder goes in a temporary folder removed when the agent ends, not left in the system's temporary folder."""
import sys
import tempfile
from typing import List, Optional

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main(argv: Optional[List[str]] = None) -> int:
    launcher_args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="poprun_agent_") as logs:
        try:
            run(parse_args([f"--log-dir={logs}", *launcher_args]))   # a --log-dir given later wins
        except SignalException as exc:
            return 128 + int(exc.sigval)
        except ChildFailedError as exc:
            rank, failure = exc.get_first_failure()
            print(f"poprun: torch.distributed.run stopped this host's instances: its worker rank {rank} "
                  f"(local rank {failure.local_rank}) exited with code {failure.exitcode}.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
