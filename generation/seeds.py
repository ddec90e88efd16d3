"""Seeds and splits as pure functions of ids, so an image depends on nothing but its work item."""

from __future__ import annotations

import hashlib


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def item_seed(base_seed: int, prompt_family: str, sample_index: int) -> int:
    """The seed of one image: the same for every model, whatever the batch, shard or worker.

    ``prompt_family`` is the forget prompt's id, shared by its remove/replace variants, so that the
    images of a prompt and of its target-free variant start from the same noise (paired metrics).
    """
    return _hash(base_seed, prompt_family, sample_index) & (2**63 - 1)


def split_of(prompt_key: str, test_fraction: float, salt: str = "split") -> str:
    """``"test"`` for a stable ``test_fraction`` of prompt keys, else ``"train"``.

    Derived prompts pass their parent's id, so a forget prompt and its P̂ variants share a split.
    """
    return "test" if _hash(salt, prompt_key) / 2**64 < test_fraction else "train"
