"""The label review: a queue of images to check, a local page to decide on each, a decisions file.

``dataigm judge agree`` writes the queue; ``dataigm review ROOT --queue FILE`` serves the page
(:class:`ReviewServer`); ``dataigm curate apply`` (:mod:`dataigm.curate`) writes the decisions as a new revision.
"""

from .decisions import CHOICES, DECISIONS_FORMAT, DecisionLog, Decisions, dataset_identity, read_decisions
from .queue import QUEUE_FORMAT, QueueItem, load_queue, read_queue, write_queue
from .server import ReviewServer

__all__ = [
    "CHOICES",
    "DECISIONS_FORMAT",
    "QUEUE_FORMAT",
    "DecisionLog",
    "Decisions",
    "QueueItem",
    "ReviewServer",
    "dataset_identity",
    "load_queue",
    "read_decisions",
    "read_queue",
    "write_queue",
]
