"""Query-log data layer: normalisation, vocabulary, task specs, the on-disk dataset contract."""
