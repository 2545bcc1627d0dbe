"""Reading Spark observations (the job summaries' counters, gathered by the job that writes)."""
from __future__ import annotations

from pyspark.sql import Observation


def metrics(obs: Observation) -> dict:
    """The metrics of ``obs`` once its job ran, or ``{}`` when the observed operator never ran.

    Adaptive execution drops the operators above a shuffle that received no rows (an input whose
    every line was rejected has no events to group), so an observation there is never filled;
    ``Observation.get`` then fails on an empty row instead of returning nothing.
    """
    if obs._jo is not None and obs._jo.getRow().size() == 0:
        return {}
    return obs.get
