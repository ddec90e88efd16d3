"""The benchmark's pieces that need no images: the paired statistics of a board (:mod:`detectors.bench.paired`)."""
