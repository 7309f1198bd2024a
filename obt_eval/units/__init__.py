"""Acoustic units: k-means codebooks over a feature store and the unit sequences they assign."""

from obt_eval.units.store import UnitsStore, run_length

__all__ = ["UnitsStore", "run_length"]
