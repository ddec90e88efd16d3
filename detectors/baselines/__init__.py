"""Baseline judges behind the same :class:`detectors.judge.Judge` API, for the paper's evaluator audit.

Loaded by spec with :func:`detectors.load_judge`: ``nudenet:…``, ``clip-zeroshot:…``, ``imagenet:…``.
Each module imports its heavy dependency only when a judge is built.
"""
