"""Feature stores: per (corpus, encoder, layer) sharded fp16 arrays with an index and a sidecar."""

from obt_eval.features.store import FeatureStore, FeatureStoreWriter

__all__ = ["FeatureStore", "FeatureStoreWriter"]
