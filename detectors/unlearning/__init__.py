"""Evaluation of unlearned models (EvalIGMU): oracles, metrics, reports."""
