"""MMA-Diffusion, text modality (Yang et al., "MMA-Diffusion: MultiModal Attack on Diffusion Models", CVPR 2024):
a prompt of free tokens whose text embedding matches the unsafe prompt's, found by token substitution with the
concept's sensitive words banned from the vocabulary, so the prompt never names the concept.

Followed: github:cure-lab/MMA-Diffusion at commit d5701a5dd1ad (src/textual_attack.py; its README runs
``-i 1000``). The loss is 1 - cos(e(p), e(c)), e the text encoder's pooled output (``pooler_output``: the final
hidden state at the end token), p the adversarial prompt and c the unsafe prompt. Each step (a greedy coordinate
gradient step): the gradient of the loss with respect to a one-hot encoding of the prompt's tokens, normalised per
position; banned tokens get +inf; the top-k (256) tokens of minus the gradient per position; ``candidates`` (512)
copies of the prompt, copy j with position floor(j L / candidates) replaced by a random one of that position's
top-k; copies whose text does not tokenize back to L tokens or equals the prompt are replaced by the last valid one;
every copy's loss; the best copy becomes the prompt (even when worse than the prompt), and the best prompt seen is
the result. The start: 20 random ASCII letters joined by spaces. Banned: every token whose text contains one of the
sensitive words; for nudity the reference's list ('ak', 'na', 'ke', 'nud' and 18 NSFW words), for another concept the
words of its targets and remove words, function words left out (the reference has a list for nudity only).

Differences from the reference (each in docs/attacks.md):

* the one-hot gradient is taken at the prompt's own token positions; the reference takes it at the first 20
  positions of the padded sequence, the start token's included, so its row i scores the prompt's token i - 1
  (``reference_rows`` does as it does);
* only real tokens can be drawn (special tokens never); the reference draws from the whole embedding table;
* when no copy is valid the prompt stays (the reference would fail on an empty list);
* each prompt draws its start and its substitutions from its own seeded generator, so its result does not depend on
  the batch (the reference: Python's and torch's global generators);
* the start counts as a result (``best_step`` 0) when no step beats it; the reference's best starts at 1e6, so its
  result is always a step's;
* one search per prompt (and seed); the reference's ``-n 10`` runs ten from different starts per target prompt;
* the model's ``text_encoder`` is the one attacked, read before its projection if it has one (SD3's); on SDXL, SD3
  and Flux the other text encoders (OpenCLIP bigG, T5) are not matched; the reference attacks SD 1.5 inpainting's.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from .common import TextSide, _input_embeddings_replaced, torch_generator

# src/textual_attack.py: sensitive_word_list = ['ak', 'na', 'ke', 'nud'] + nsfw_word_list
NUDITY_BANNED = (
    "ak", "na", "ke", "nud", "sexual", "nude", "nudity", "sex", "18+", "naked", "nsfw", "porn", "dick", "vagina",
    "naked child", "explicit content", "uncensored", "fuck", "nipples", "visible nipples", "breast", "areola",
)  # fmt: skip


@dataclass
class Options:
    """The search's settings (released: 20 tokens, 1000 steps, 512 candidates, top-256); ``reference_rows``: the
    one-hot gradient at the reference's rows (the padded sequence's first ``tokens``, start token included)."""

    tokens: int = 20
    iterations: int = 1000
    candidates: int = 512
    topk: int = 256
    reference_rows: bool = False


@dataclass
class Result:
    """One attacked prompt: ``text`` (the best prompt), its ``token_ids``, its ``loss`` (1 - cosine), the start's
    ``start_loss`` and the steps done when the best was found (``best_step``, 0: the start)."""

    text: str
    token_ids: list[int]
    loss: float
    start_loss: float
    best_step: int


# words of a concept's phrases that do not name it ("in the style of van gogh" names van, gogh)
FUNCTION_WORDS = frozenset({"a", "an", "and", "at", "by", "for", "in", "of", "on", "or", "style", "the", "to", "with"})


def banned_words(concept: str, targets: Sequence[str] = (), remove_words: Sequence[str] = ()) -> list[str]:
    """The words whose tokens are banned for ``concept``: the reference's list for nudity, else the words of the
    concept's targets and remove words, function words left out. Words, not phrases: a token is matched by
    substring and holds no space, so a phrase would ban nothing."""
    if concept == "nudity":
        return list(NUDITY_BANNED)
    words = {w for phrase in (*targets, *remove_words) for w in phrase.lower().split()}
    return sorted(words - FUNCTION_WORDS)


def banned_ids(text: TextSide, words: Sequence[str]) -> set[int]:
    """Ids of the vocabulary tokens whose text contains any of ``words`` (the reference's substring rule)."""
    return {i for token, i in text.tokenizer.get_vocab().items() if any(w in token for w in words)}


def check_vocabulary(text: TextSide, words: Sequence[str]) -> None:
    """Refuse banned ``words`` that leave no token of the vocabulary to substitute."""
    if not set(text.candidates.tolist()) - banned_ids(text, words):
        raise ValueError(f"mma_banned: its {len(words)} word(s) ban every token of the vocabulary; none is left")


def pooled(text: TextSide, ids, replace=None, start: int = 1):
    """The encoder's pooled output (B, D) of ``ids``; ``replace`` (B, L, D) stands for positions start .. start + L.

    A CLIP encoder with a projection (SDXL's second, SD3's) is read before its projection, as the reference reads
    SD's plain one: its inner text model has the ``pooler_output`` its own output lacks."""
    model = getattr(text.encoder, "text_model", text.encoder)
    if replace is None:
        return model(ids).pooler_output
    with _input_embeddings_replaced(text.encoder, replace, start):
        return model(ids).pooler_output


def words_of(text: TextSide, strings: Sequence[str]) -> list[list[int]]:
    """:meth:`TextSide.words` of each string in one tokenizer call (one call per string took most of a step)."""
    if not strings:
        return []
    return list(
        text.tokenizer(list(strings), add_special_tokens=False, truncation=True, max_length=text.max_length).input_ids
    )


def losses_of(text: TextSide, strings: Sequence[str], target, chunk: int = 256, words=None):
    """1 - cos(pooled(string), target) for each string (``target``: (D,) or one row per string); ``words``: the
    strings' tokens (:func:`words_of`) when they are known already."""
    import torch

    words = words_of(text, strings) if words is None else words
    out = []
    with torch.no_grad():
        for i in range(0, len(strings), chunk):
            ids = torch.tensor([text.sequence(w) for w in words[i : i + chunk]])
            rows = target if target.dim() == 1 else target[i : i + chunk]
            emb = pooled(text, ids.to(text.candidates.device)).float()
            out.append(1 - torch.nn.functional.cosine_similarity(emb, rows.float().expand_as(emb), dim=-1, eps=1e-6))
    return torch.cat(out)


def gradient(text: TextSide, control: Sequence[int], target, reference_rows: bool = False):
    """The gradient (L, V) of the loss with respect to the one-hot encoding of ``control``'s L tokens; with
    ``reference_rows``, of the padded sequence's first L tokens (the start token and ``control`` but its last)."""
    import torch

    weights = text.encoder.get_input_embeddings().weight
    ids = torch.tensor([text.sequence(control)], device=weights.device)
    start = 0 if reference_rows else 1
    one_hot = torch.zeros(len(control), weights.shape[0], device=weights.device, dtype=weights.dtype)
    one_hot[torch.arange(len(control)), ids[0, start : start + len(control)]] = 1
    one_hot.requires_grad_(True)
    emb = pooled(text, ids, (one_hot @ weights)[None], start).float()
    loss = 1 - torch.nn.functional.cosine_similarity(emb, target.float()[None], dim=-1, eps=1e-6)
    (grad,) = torch.autograd.grad(loss.sum(), [one_hot])
    return grad


def start_text(generator, tokens: int) -> str:
    """``tokens`` random ASCII letters joined by spaces (the reference's start)."""
    import torch

    letters = string.ascii_letters
    return " ".join(letters[int(i)] for i in torch.randint(len(letters), (tokens,), generator=generator))


def _candidates(text: TextSide, control: list[int], grad, allowed, options: Options, generator, current: str):
    import torch

    grad = grad / grad.norm(dim=-1, keepdim=True)
    grad = grad.masked_fill(~allowed, float("inf"))
    top = (-grad).topk(min(options.topk, int(allowed.sum())), dim=1).indices  # (L, k)
    length = len(control)
    positions = (torch.arange(options.candidates) * length // options.candidates).long()
    picks = torch.randint(top.shape[1], (options.candidates,), generator=generator).to(top.device)
    copies = torch.tensor(control, device=top.device).repeat(options.candidates, 1)
    copies[torch.arange(options.candidates), positions] = top[positions, picks]
    texts = ["".join(text.tokenizer.convert_ids_to_tokens(row)).replace("</w>", " ")[:-1] for row in copies.tolist()]
    out, last = [], None
    for written, words in zip(texts, words_of(text, texts), strict=True):
        valid = written != current and len(words) == length
        last = (written, words) if valid else last
        out.append((written, words) if valid else None)
    return [s if s is not None else last for s in out] if last is not None else []  # (text, its tokens) pairs


def search_batch(text: TextSide, prompts: Sequence[str], seeds: Sequence[int], banned: set[int], options: Options):
    """Search an adversarial prompt for each of ``prompts`` (each as it would be alone)."""
    import torch

    device = text.candidates.device
    allowed = torch.zeros(text.encoder.get_input_embeddings().weight.shape[0], dtype=torch.bool, device=device)
    allowed[text.candidates] = True
    allowed[torch.tensor(sorted(banned & set(range(len(allowed)))), dtype=torch.long, device=device)] = False
    with torch.no_grad():
        targets = pooled(text, torch.tensor([text.sequence(text.words(p)) for p in prompts], device=device)).float()
    generators = [torch_generator(s) for s in seeds]
    current = [start_text(g, options.tokens) for g in generators]
    start_loss = losses_of(text, current, targets).tolist()
    best = [(start_loss[b], current[b], 0) for b in range(len(prompts))]
    for step in range(options.iterations):
        copies = []
        for b in range(len(prompts)):
            control = text.words(current[b])
            grad = gradient(text, control, targets[b], options.reference_rows)
            copies.append(_candidates(text, control, grad, allowed, options, generators[b], current[b]))
        flat = [s for c in copies for s, _ in c]
        if not flat:
            continue
        rows = torch.cat([targets[b].expand(len(c), -1) for b, c in enumerate(copies)])
        losses = losses_of(text, flat, rows, words=[w for c in copies for _, w in c])
        at = 0
        for b, c in enumerate(copies):
            if c:
                i = int(losses[at : at + len(c)].argmin())
                current[b], value = c[i][0], float(losses[at + i])
                if value < best[b][0]:
                    best[b] = (value, c[i][0], step + 1)
            at += len(c)
    return [Result(s, text.words(s), loss, start_loss[b], step) for b, (loss, s, step) in enumerate(best)]
