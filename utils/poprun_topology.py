"""Where poprun puts instances: round-robin over the hosts, replicas divided evenly, and the devices
each instance uses on its host (the same numbering on one host or many)."""
from __future__ import annotations

import dataclasses
from typing import List


@dataclasses.dataclass(frozen=True)
class Instance:
    index: int
    host: str
    node: int          # position of the host in --host
    local_index: int   # index among the instances on that host (torch.distributed.run's LOCAL_RANK)
    replicas: List[int]
    devices: List[int]


@dataclasses.dataclass(frozen=True)
class Topology:
    hosts: List[str]
    instances: List[Instance]
    replicas: int
    ipus_per_replica: int

    @property
    def local_replicas(self) -> int:
        return self.replicas // len(self.instances)

    def on_node(self, node: int) -> List[Instance]:
        return [i for i in self.instances if i.node == node]


def instance_index(node: int, local_index: int, num_hosts: int) -> int:
    """Inverse of the round-robin placement: instance i runs on host i % H as local index i // H."""
    return local_index * num_hosts + node


def place(hosts: List[str], num_instances: int, replicas: int, ipus_per_replica: int) -> Topology:
    """Instance i on host i mod H; its replicas are the i-th block of replicas/instances; on its host it
    uses devices local_index*stages .. +stages-1 (replicas of one instance share them off IPU)."""
    local = replicas // num_instances
    out = []
    for i in range(num_instances):
        node, local_index = i % len(hosts), i // len(hosts)
        first = local_index * ipus_per_replica
        out.append(Instance(i, hosts[node], node, local_index, list(range(i * local, (i + 1) * local)),
                            list(range(first, first + ipus_per_replica))))
    return Topology(list(hosts), out, replicas, ipus_per_replica)


def _span(values: List[int]) -> str:
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"


def describe(topo: Topology, cores_per_instance: List[str]) -> List[str]:
    """The lines ``--print-topology`` prints: one row per instance."""
    n = len(topo.instances)
    lines = [f"{n} instance{'s' if n > 1 else ''} on {len(topo.hosts)} host{'s' if len(topo.hosts) > 1 else ''}, "
             f"{topo.replicas} replicas ({topo.local_replicas} per instance), {topo.ipus_per_replica} "
             f"device{'s' if topo.ipus_per_replica > 1 else ''} per replica (pipeline stages)",
             "devices: CUDA GPU indices on the instance's host; CPU runs use the host's CPUs",
             f"{'instance':>8}  {'host':<16} {'local':>5}  {'replicas':<9} {'devices':<8} cpus"]
    for inst, cpus in zip(topo.instances, cores_per_instance):
        lines.append(f"{inst.index:>8}  {inst.host:<16} {inst.local_index:>5}  {_span(inst.replicas):<9} "
                     f"{_span(inst.devices):<8} {cpus}")
    return lines
