"""Ring-A-Bell: a concept vector from the text encoder and a genetic search for a prompt that carries it.

Tsai et al., "Ring-A-Bell! How Reliable are Concept Removal Methods for Diffusion Models?", ICLR 2024. The concept
vector is the mean, over prompt pairs that differ only by the concept, of the text encoder's output with minus
without it (all token positions). For a prompt p the search looks for K tokens whose encoding E is closest (squared
L2 distance, the released fitness) to E(p) + eta * vector. The genetic search follows the released notebook:
keep the better half of the population, let each survivor breed two children by one-point crossover with a
chance ``crossover_rate``, then replace one random token of a candidate with a chance ``mutation_rate``. This
version returns the best candidate seen in any generation (the notebook: the best of the last one).

It needs only the tokenizer and text encoder, so it attacks any model whose text side it can reach (the attacked
model's own text encoder is used, which matters for methods that unlearn in the text encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dataigm.prompts import PromptRecord

from .common import TextSide


@dataclass
class Options:
    """The search's settings (published values in :class:`generation.attacks.config.AttackConfig`)."""

    tokens: int = 16
    eta: float = 3.0
    population: int = 200
    generations: int = 3000
    mutation_rate: float = 0.25
    crossover_rate: float = 0.5
    eval_batch: int = 256  # candidates encoded per text-encoder call (speed only)


@dataclass
class Result:
    """One searched prompt.

    Attributes:
        token_ids: the K tokens found.
        text: their decoding (the adversarial prompt).
        fitness: squared L2 distance of their encoding to the target (lower is closer).
        start_fitness: the best fitness of the first generation.
        history: the best fitness of each generation.
    """

    token_ids: list[int]
    text: str
    fitness: float
    start_fitness: float
    history: list[float] = field(default_factory=list)


def concept_pairs(records: Sequence[PromptRecord], concept: str) -> list[tuple[str, str]]:
    """(with, without) texts: each ``remove`` prompt with the ``forget`` prompt it derives from (``parent_id``).

    Raises:
        ValueError: no pair differs, so there are no target words to make a vector from.
    """
    forget = {r.prompt_id: r.text for r in records if r.kind == "forget"}
    pairs = [(forget[r.parent_id], r.text) for r in records if r.kind == "remove" and r.parent_id in forget]
    pairs = [(a, b) for a, b in pairs if a.strip() != b.strip()]
    if not pairs:
        raise ValueError(
            f"Concept {concept!r} has no prompt pairs with and without its target words (forget prompts with remove "
            "variants that differ); give concept_prompts, a JSONL file of forget prompts and their remove variants"
        )
    return pairs


def concept_vector(text: TextSide, pairs: Sequence[tuple[str, str]], batch_size: int = 32):
    """Mean over ``pairs`` of E(with) - E(without), E the encoder's last hidden states (L, D), in float32."""
    import torch

    total = None
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i : i + batch_size]
            with_ids = torch.tensor([text.sequence(text.words(a)) for a, _ in chunk], device=text.candidates.device)
            without_ids = torch.tensor([text.sequence(text.words(b)) for _, b in chunk], device=with_ids.device)
            diff = (text.encode(with_ids).float() - text.encode(without_ids).float()).sum(dim=0)
            total = diff if total is None else total + diff
    return total / len(pairs)


def _encode_all(text: TextSide, candidates, batch: int):
    """Encodings (N, L, D) of candidate token rows (N, K) as prompts ``[start] tokens [end] pad...``."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(candidates), batch):
            ids = torch.tensor(
                [text.sequence(row) for row in candidates[i : i + batch]], device=text.candidates.device
            )
            out.append(text.encode(ids).float())
    return torch.cat(out)


def search_batch(
    text: TextSide, prompts: Sequence[str], seeds: Sequence[int], vector, options: Options
) -> list[Result]:
    """Search for every prompt at once; each prompt's search draws from its own generator (seeded by its seed)."""
    import numpy as np
    import torch

    k, keep = options.tokens, options.population // 2
    vocab = text.candidates.cpu().numpy()
    rngs = [np.random.default_rng(s) for s in seeds]
    prompt_ids = torch.tensor([text.sequence(text.words(p)) for p in prompts], device=text.candidates.device)
    with torch.no_grad():
        targets = text.encode(prompt_ids).float() + options.eta * vector.to(prompt_ids.device)
    populations = [rng.choice(vocab, size=(options.population, k)) for rng in rngs]
    best: list[tuple[float, np.ndarray]] = [(float("inf"), pop[0]) for pop in populations]
    history: list[list[float]] = [[] for _ in prompts]
    for generation in range(options.generations):
        sizes = [len(p) for p in populations]
        encoded = _encode_all(text, np.concatenate(populations).tolist(), options.eval_batch)
        owner = torch.tensor(np.repeat(np.arange(len(prompts)), sizes), device=encoded.device)
        fitness = ((encoded - targets[owner]) ** 2).sum(dim=(1, 2)).cpu().numpy()
        start = 0
        for b, rng in enumerate(rngs):
            scores, population = fitness[start : start + sizes[b]], populations[b]
            start += sizes[b]
            order = np.argsort(scores, kind="stable")[:keep]
            survivors = population[order]
            history[b].append(float(scores[order[0]]))
            if scores[order[0]] < best[b][0]:
                best[b] = (float(scores[order[0]]), survivors[0].copy())
            if generation < options.generations - 1:
                populations[b] = _mutate(_crossover(survivors, rng, options.crossover_rate), rng, vocab, options)
    return [
        Result(tokens.tolist(), text.decode(tokens.tolist()), score, history[b][0], history[b])
        for b, (score, tokens) in enumerate(best)
    ]


def _crossover(parents, rng, rate: float):
    """Each parent, and with chance ``rate`` two children of it and a random partner cut at one point."""
    import numpy as np

    out = []
    for parent in parents:
        out.append(parent)
        if rng.random() < rate:
            partner = parents[rng.integers(len(parents))]
            cut = int(rng.integers(0, parent.shape[0]))
            out.append(np.concatenate([parent[:cut], partner[cut:]]))
            out.append(np.concatenate([partner[:cut], parent[cut:]]))
    return np.stack(out)


def _mutate(population, rng, vocab, options: Options):
    """With chance ``mutation_rate`` a candidate gets one random token at one random place."""
    population = population.copy()
    for row in population:
        if rng.random() < options.mutation_rate:
            row[rng.integers(options.tokens)] = rng.choice(vocab)
    return population
