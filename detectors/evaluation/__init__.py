"""The EvalIGMU evaluation of unlearned models (``dataigm evaluate``): images, aspects, cache, report."""
