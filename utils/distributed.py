"""Multi-instance runs (popdist semantics in one place): who am I, how many replicas are mine, the
process group, and metric reductions across instances.

The launcher may be this project's poprun, ``torchrun`` used directly, or the Poplar SDK's
poprun/popdist over MPI; each exports a different set of variables, read here and nowhere else.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import tempfile
from typing import List, Mapping, Optional

import torch
import torch.distributed as dist

from .errors import UsageError

DEFAULT_COLLECTIVE_TIMEOUT_S = 600
# Variables naming one launch of an MPI job, for the rendezvous file when MASTER_ADDR is not given.
MPI_JOB_IDS = ("OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE", "PMI_JOBID", "SLURM_JOB_ID")


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    rank: int
    size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def prefix(self) -> str:
        """``[instanceK/N]`` (1-based, as the original) for multi-instance runs, empty otherwise."""
        return f"[instance{self.rank + 1}/{self.size}]" if self.distributed else ""


def _first_int(env: Mapping[str, str], names: tuple) -> Optional[int]:
    for name in names:
        if env.get(name, "") != "":
            return int(env[name])
    return None


def instance_info(env: Optional[Mapping[str, str]] = None) -> InstanceInfo:
    """Instance index, count and index on this host from whichever launcher started the process:
    popdist variables (our poprun and the SDK's), torch.distributed.run, then MPI (Open MPI, MPICH)."""
    env = os.environ if env is None else env
    size = _first_int(env, ("POPDIST_NUM_INSTANCES", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"))
    if size is None or size <= 1:
        return InstanceInfo(0, 1, 0)
    rank = _first_int(env, ("POPDIST_INSTANCE_INDEX", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")) or 0
    local = _first_int(env, ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")) or 0
    return InstanceInfo(rank, size, local)


def local_replicas(env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """Replicas of this instance when a launcher divided ``--num-replicas`` (total / instances), else None."""
    env = os.environ if env is None else env
    local = _first_int(env, ("POPDIST_NUM_LOCAL_REPLICAS",))
    if local is not None:
        return local
    total = _first_int(env, ("POPDIST_NUM_TOTAL_REPLICAS",))
    return None if total is None else total // instance_info(env).size


def ipus_per_replica(env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """The launcher's ``--ipus-per-replica``, which must equal the program's pipeline stages."""
    return _first_int(os.environ if env is None else env, ("POPDIST_NUM_IPUS_PER_REPLICA",))


def executable_cache_path(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """poprun's ``--executable-cache-path``, the programs' model cache path unless they set one."""
    return (os.environ if env is None else env).get("POPDIST_EXECUTABLE_CACHE_PATH") or None


def _rendezvous_file(info: InstanceInfo) -> str:
    """A FileStore path shared by the instances of one MPI job (same host, or a shared folder)."""
    job = next((os.environ[n] for n in MPI_JOB_IDS if os.environ.get(n)), None)
    if job is None:
        raise UsageError(f"{info.size} instances were launched but neither MASTER_ADDR/MASTER_PORT nor an MPI "
                         f"job id ({', '.join(MPI_JOB_IDS)}) is set; launch with poprun or torchrun, or export "
                         f"MASTER_ADDR and MASTER_PORT.")
    folder = os.environ.get("HARNESS_RENDEZVOUS_DIR") or tempfile.gettempdir()
    safe = "".join(c if c.isalnum() else "_" for c in job)
    return os.path.join(folder, f"harness_rendezvous_{safe}_{info.size}")


def _agent_store(timeout: datetime.timedelta) -> "dist.Store":
    """torch.distributed.run's store, keyed by attempt: the agent keeps one store across elastic restarts,
    and a restarted group reading the previous attempt's addresses would never connect."""
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
    return dist.PrefixStore(f"harness/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def instance_cuda_devices(info: InstanceInfo, stages: int, count: int) -> List[str]:
    """The one rule for which GPUs an instance uses: ``stages`` consecutive devices (one per pipeline
    stage) starting at ``local_rank x stages``, wrapping round when the host has fewer than
    instances x stages (then instances share devices)."""
    count = max(1, count)
    first = (info.local_rank * stages) % count
    return [f"cuda:{(first + k) % count}" for k in range(stages)]


def init_process_group(info: InstanceInfo, device: str, timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S,
                       stages: int = 1) -> None:
    """Join the instances' group (NCCL on CUDA, gloo otherwise) whenever there is more than one instance,
    so metrics are always combined; every collective gives up after ``timeout_s`` instead of hanging.
    On CUDA the current device is the instance's first stage device (``instance_cuda_devices``)."""
    if not info.distributed or dist.is_initialized():
        return
    backend = "nccl" if device == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        dist.init_process_group(backend, store=_agent_store(timeout), rank=info.rank, world_size=info.size,
                                timeout=timeout)
    elif "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        dist.init_process_group(backend, rank=info.rank, world_size=info.size, timeout=timeout)
    else:
        store = dist.FileStore(_rendezvous_file(info), info.size)
        store.set_timeout(timeout)
        dist.init_process_group(backend, store=store, rank=info.rank, world_size=info.size, timeout=timeout)
    if device == "cuda":
        torch.cuda.set_device(instance_cuda_devices(info, stages, torch.cuda.device_count())[0])


def _reduce(values: List[float], op: "dist.ReduceOp") -> List[float]:
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.cpu().tolist()


def sum_all(values: List[float]) -> List[float]:
    return _reduce(values, dist.ReduceOp.SUM)


def max_all(values: List[float]) -> List[float]:
    return _reduce(values, dist.ReduceOp.MAX)


def min_all(values: List[float]) -> List[float]:
    return _reduce(values, dist.ReduceOp.MIN)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Tear the group down once every instance has finished its last collective; an instance tearing
    down (rank 0 also hosts the rendezvous store) while another is still mid-collective can abort it."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(value: object) -> List[object]:
    """Every instance's ``value``, in instance order (just ``[value]`` with one instance)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: List[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
