"""Several processes: ranks, the rank-aware prefix cache, Lightning strategies, full state of sharded models."""
