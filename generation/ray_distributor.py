"""Moved: the Ray distributor is :class:`dataigm.distribute.RayDistributor`, which takes any shard worker."""

from dataigm.distribute import RayDistributor

__all__ = ["RayDistributor"]
