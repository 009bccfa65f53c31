"""popdist.poptorch.Options: poptorch.Options set up for this poprun instance, as popdist does."""
import poptorch

import popdist


class Options(poptorch.Options):
    def __init__(self, ipus_per_replica: int = 1) -> None:
        super().__init__()
        self.replicationFactor(popdist.getNumLocalReplicas())
        self.Distributed.configureProcessId(popdist.getInstanceIndex(), popdist.getNumInstances())
        if popdist.getNumInstances() > 1:
            self._Popart.set("enableDistributedReplicatedGraphs", True)
            self._Popart.set("globalReplicationFactor", popdist.getNumTotalReplicas())
            self._Popart.set("globalReplicaOffset", popdist.getReplicaIndexOffset())
        self.createOrSet(ipus_per_replica=ipus_per_replica)
