"""What both attacks share: the text side of a model (tokens, embeddings, encoding with adversarial embeddings),
the projection of embeddings onto real vocabulary tokens, per-prompt seeds, and the target model's checksum."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from dataigm.identity import json_sha256, weights_identity
from dataigm.prompts import PromptRecord

from ..seeds import item_seed
from ..spec import ModelSpec
from .config import PROJECTIONS


def prompt_seed(record: PromptRecord, base_seed: int) -> int:
    """The seed an attack uses for ``record``: its own, else the seed ``dataigm generate`` gives its first image."""
    return record.seed if record.seed is not None else item_seed(base_seed, record.parent_id or record.prompt_id, 0)


def torch_generator(seed: int):
    """A CPU generator for one prompt: its draws do not depend on the batch the prompt is in."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)


@dataclass
class TextSide:
    """A pipeline's tokenizer and text encoder as the attacks use them.

    Attributes:
        tokenizer: a CLIP-style tokenizer (start and end tokens, padding to ``model_max_length``).
        encoder: a transformers text encoder whose input embeddings (``get_input_embeddings``) can be replaced.
        max_length: tokens the encoder takes, start and end tokens included.
        candidates: ids of the vocabulary tokens an attack may use (every token the tokenizer can write, special
            tokens excepted).
    """

    tokenizer: object
    encoder: object
    max_length: int
    candidates: object  # LongTensor on the encoder's device

    @classmethod
    def of(cls, pipe, who: str) -> TextSide:
        """The text side of ``pipe``; a pipeline without a reachable CLIP-style text encoder is refused."""
        import torch

        tokenizer = getattr(pipe, "tokenizer", None)
        encoder = getattr(pipe, "text_encoder", None)
        if tokenizer is None or encoder is None or not hasattr(encoder, "get_input_embeddings"):
            raise ValueError(
                f"Model {who!r} has no text encoder the attack can reach (a pipeline with `tokenizer` and a "
                f"transformers `text_encoder`, such as Stable Diffusion 1.x/2.x); got {type(pipe).__name__}"
            )
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(
                f"Model {who!r}: its tokenizer has no start/end tokens; the attacks need a CLIP tokenizer"
            )
        vocab_rows = encoder.get_input_embeddings().weight.shape[0]
        special = set(tokenizer.all_special_ids)
        ids = [i for i in range(min(len(tokenizer), vocab_rows)) if i not in special]
        device = encoder.get_input_embeddings().weight.device
        max_length = min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))
        return cls(tokenizer, encoder, max_length, torch.tensor(ids, dtype=torch.long, device=device))

    @property
    def table(self):
        """The input embedding of every vocabulary row (detached)."""
        return self.encoder.get_input_embeddings().weight.detach()

    @cached_property
    def vocab(self):
        """The input embeddings of :attr:`candidates` in float32 (C, D), made once."""
        return self.table[self.candidates].float()

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    def words(self, text: str) -> list[int]:
        """The token ids of ``text`` without start and end tokens."""
        return list(
            self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=self.max_length).input_ids
        )

    def sequence(self, middle: Sequence[int]) -> list[int]:
        """``[start] + middle + [end]``, padded to ``max_length`` (``middle`` cut to fit)."""
        middle = list(middle)[: self.max_length - 2]
        ids = [self.tokenizer.bos_token_id, *middle, self.tokenizer.eos_token_id]
        return ids + [self.pad_id] * (self.max_length - len(ids))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def check_tokens(self, k: int, method: str) -> None:
        """Refuse ``k`` adversarial tokens that do not fit the encoder with the start and end tokens."""
        room = self.max_length - 2
        if not 1 <= k <= room:
            raise ValueError(
                f"tokens {k} cannot be used by {method}: the text encoder takes {self.max_length} tokens, so K must "
                f"be from 1 to {room}"
            )

    def encode(self, ids, replace=None, start: int = 1):
        """The encoder's last hidden states of ``ids`` (B, L); ``replace`` (B, K, D) embeddings stand in for the
        input embeddings of positions ``start .. start + K`` (gradients flow into them)."""
        if replace is None:
            return self.encoder(ids)[0]
        with _input_embeddings_replaced(self.encoder, replace, start):
            return self.encoder(ids)[0]


@contextmanager
def _input_embeddings_replaced(encoder, replace, start: int) -> Iterator[None]:
    """Replace a slice of the token embeddings by a forward hook: the encoder's own forward (positions, causal
    mask, final norm) runs unchanged, whatever its version."""

    def hook(_module, _inputs, output):
        out = output.clone()
        out[:, start : start + replace.shape[1]] = replace.to(out.dtype)
        return out

    handle = encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def nearest_tokens(embeddings, vocab, candidates, metric: str = "cosine"):
    """The candidate token nearest to each embedding: ids shaped like ``embeddings[..., 0]``.

    ``vocab`` holds the candidates' embeddings (:attr:`TextSide.vocab`). ``cosine`` (the default) is the rule of
    the released hard-prompt code: the largest cosine similarity of the L2-normalised embedding and vocabulary
    rows (``project`` in src/attackers/hard_prompt_.py of OPTML-Group/Diffusion-MU-Attack at 5a3e5d3, which
    follows ``nn_project`` of Wen et al.'s "Hard Prompts Made Easy"); ``euclidean`` the smallest L2 distance.
    Unlike the reference, only real tokens (``candidates``, special tokens left out) can be chosen.
    """
    import torch

    if metric not in PROJECTIONS:
        raise ValueError(f"Unknown projection {metric!r}; valid: {', '.join(PROJECTIONS)}")
    flat = embeddings.detach().float().reshape(-1, vocab.shape[-1])
    if metric == "cosine":
        unit = torch.nn.functional.normalize
        best = (unit(flat, dim=-1) @ unit(vocab.float(), dim=-1).T).argmax(dim=-1)
    else:
        best = torch.cdist(flat, vocab).argmin(dim=-1)
    return candidates[best].reshape(embeddings.shape[:-1])


# ---------------------------------------------------------------- the target model's checksum


def model_checksum(spec: ModelSpec, revision: str | None = None) -> str:
    """A sha256 of what the attacked model computes with: its spec, its resolved revision and the content identity
    of every weights file, folder or Hub model it loads (:func:`dataigm.identity.weights_identity`)."""
    return json_sha256({"spec": spec.to_dict(), "revision": revision, "weights": weights_identity(spec.to_dict())})
