"""Stand-in for popdist: the instance and replica counts poprun puts in the environment."""
import os


def isPopdistEnvSet() -> bool:
    return "POPDIST_NUM_TOTAL_REPLICAS" in os.environ and "POPDIST_NUM_INSTANCES" in os.environ


def getNumTotalReplicas() -> int:
    return int(os.environ["POPDIST_NUM_TOTAL_REPLICAS"])


def getNumInstances() -> int:
    return int(os.environ["POPDIST_NUM_INSTANCES"])


def getInstanceIndex() -> int:
    return int(os.environ.get("POPDIST_INSTANCE_INDEX", 0))


def getNumLocalReplicas() -> int:
    return getNumTotalReplicas() // getNumInstances()


def getReplicaIndexOffset() -> int:
    return getInstanceIndex() * getNumLocalReplicas()
