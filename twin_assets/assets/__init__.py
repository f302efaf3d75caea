"""Assets grouped by pipeline stage: collection -> features -> datasets -> training."""
