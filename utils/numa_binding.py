"""``poprun --numa-aware yes``: which CPUs (and NUMA memory node) each instance on a host gets."""
from __future__ import annotations

import dataclasses
import glob
import os
import shutil
from typing import Dict, List, Optional


@dataclasses.dataclass(frozen=True)
class Binding:
    cpus: List[int]
    numa_node: Optional[int]   # memory bound to this node (with numactl), None when memory is not bound
    prefix: List[str]          # command prefix (numactl ...) or empty when affinity is set directly
    note: str                  # one sentence saying what was done, or why not


def parse_cpulist(text: str) -> List[int]:
    out: List[int] = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def numa_nodes(root: str = "/sys/devices/system/node") -> Dict[int, List[int]]:
    """NUMA node -> its CPUs, for nodes that have CPUs; empty when the kernel does not say."""
    nodes: Dict[int, List[int]] = {}
    for path in sorted(glob.glob(os.path.join(root, "node[0-9]*", "cpulist"))):
        with open(path) as f:
            cpus = parse_cpulist(f.read())
        if cpus:
            nodes[int(os.path.basename(os.path.dirname(path))[4:])] = cpus
    return nodes


def allowed_cpus() -> List[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def _share(cpus: List[int], index: int, count: int) -> List[int]:
    """The index-th of ``count`` contiguous, non-empty slices of ``cpus`` (slices overlap when count > CPUs)."""
    lo = index * len(cpus) // count
    return cpus[lo:max((index + 1) * len(cpus) // count, lo + 1)]


def plan(local_index: int, local_count: int, nodes: Optional[Dict[int, List[int]]] = None,
         cpus: Optional[List[int]] = None, numactl: Optional[str] = None) -> Binding:
    """Several NUMA nodes: instances take nodes in turn (CPUs and memory with numactl, CPUs only without).
    One node: the host's CPUs are split between its instances."""
    nodes = numa_nodes() if nodes is None else nodes
    allowed = set(allowed_cpus() if cpus is None else cpus)
    numactl = shutil.which("numactl") if numactl is None else numactl
    if len(nodes) > 1:
        ids = sorted(nodes)
        node = ids[local_index % len(ids)]
        mine = [c for c in nodes[node] if c in allowed] or sorted(allowed)
        share = _share(mine, local_index // len(ids), -(-local_count // len(ids)))
        if numactl:
            cpulist = ",".join(map(str, share))
            return Binding(share, node, [numactl, f"--physcpubind={cpulist}", f"--membind={node}"],
                           f"CPUs {cpulist} and memory of NUMA node {node} (numactl)")
        return Binding(share, None, [], f"CPUs {','.join(map(str, share))} of NUMA node {node}; memory is not "
                                        f"bound because numactl is not installed")
    share = _share(sorted(allowed), local_index, local_count)
    return Binding(share, None, [], f"CPUs {','.join(map(str, share))} (one NUMA node: the host's CPUs are split "
                                    f"between its {local_count} instance(s); no memory binding is needed)")
