"""P4D (Chin et al., "Prompting4Debugging: Red-Teaming Text-to-Image Diffusion Models by Finding Problematic
Prompts", ICML 2024): a prompt optimised so that the *unlearned* model's noise prediction, conditioned on it,
matches the *original* model's noise prediction conditioned on the unsafe prompt, on noised latents of the
original model's image of that prompt.

Followed: github:joycenerd/P4D at commit 2cf3cda9d458 (prompt_optimization/optimize_n.py and optimize_k.py,
run_p4dn.py, configs/esd_nudity_optmz_config.json). For a prompt c, its target latents x0 and the original and
unlearned noise predictors eps_o and eps_u, each step draws t uniformly from {0, ..., 999} and noise eps, and
minimises over the adversarial tokens d the MSE ||eps_u(x_t, t, d) - eps_o(x_t, t, c)||^2 (mean over the latent's
elements). The tokens are soft embeddings projected to their nearest vocabulary token by cosine similarity at
every step (the forward pass uses the projected tokens, the gradient updates the soft ones), optimised with AdamW.

* **P4D-N** (``variant="n"``): N free tokens (released: 16) make the whole prompt, initialised at random tokens.
* **P4D-K** (``variant="k"``): a free token before every K words of the prompt's tokens (released: K = 3; for L
  prompt tokens, L // K + 1 free tokens at positions 0, K + 1, 2 (K + 1), ...); the prompt's tokens stay fixed.

Released defaults: 3000 steps, learning rate 0.1, weight decay 0.1; every 50 steps the decoded prompt is rendered by
the unlearned model (the prompt's seed and guidance, 25 steps) and the prompt whose image is most similar to the
target image (cosine of CLIP ViT-H-14 image features) is kept. Here ``score`` (the runner's: render and compare with
a CLIP model) plays that part; without it, the last step's tokens are the result.

Differences from the reference (each in docs/attacks.md):

* the start and end tokens of the adversarial prompt and the padding are the pipeline's (the reference pads the
  optimised sequence with token 0, "!", and its evaluation renders the decoded text with the pipeline's padding);
* the projection chooses among real tokens only (special tokens excepted), as UnlearnDiffAtk's here does;
* the target latents are the VAE's mean, not a sample of its posterior (deterministic), of the image in [-1, 1]
  as the VAE takes it (the reference's ``img_preprocess`` in run_p4dn.py, Resize, CenterCrop and ToTensor with no
  normalisation, gives it pixels in [0, 1]);
* each prompt draws its initial tokens, timesteps and noise from its own seeded generator and is optimised by its
  own AdamW, so its result does not depend on the batch (the reference attacks one prompt at a time, its noise from
  the pipeline's generator seeded with the prompt's seed, its timesteps and initial tokens from torch's global one);
* P4D-K cuts a prompt's last tokens until the prompt and its free tokens fit the encoder (75 tokens);
* the target images come from ``target_steps`` of the pipeline's scheduler (default 25, as released, where the
  released configuration's scheduler is DPM-Solver), one per prompt (the reference's: the most unsafe, by NudeNet, of 3);
* each scoring render starts from the prompt's seed (the reference's renders draw on from one generator seeded once
  per prompt);
* P4D-K keeps the end token after the sequence (the reference writes its free and prompt tokens over it, so its
  optimised sequence has none while the text it renders has one);
* the attacked model's prediction is its UNet's with the adversarial prompt alone: the reference's ``--filter``
  path (a model spec's negative prompt as the unconditional branch of classifier-free guidance at the prompt's
  guidance inside the loss, or SLD's safety guidance) is not here, and a spec's ``negative_prompt`` is applied
  neither in the loss nor in the scoring renders.

UnlearnDiffAtk's repository (github:OPTML-Group/Diffusion-MU-Attack at 5a3e5d37fb87, src/attackers/hard_prompt_.py
and src/tasks/P4D_.py) has a P4D baseline with the same loss inside its own protocol (5 tokens before the prompt,
Adam, 40 steps at each of its timesteps, stopping at the first flagged image): neither P4D-N nor P4D-K, so the P4D
authors' code is the one followed here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .common import TextSide, nearest_tokens, torch_generator
from .unlearndiffatk import timestep_grid

VARIANTS = ("n", "k")
# Score the texts of the batch's prompts at ``indices``: the similarity of the unlearned model's image of each text
# to its target image (higher is better).
Score = Callable[[list[int], list[str]], list[float]]


@dataclass
class Options:
    """The attack's settings (published values: :class:`generation.attacks.config.AttackConfig`)."""

    variant: str = "n"
    tokens: int = 16
    every: int = 3
    iterations: int = 3000
    lr: float = 0.1
    weight_decay: float = 0.1
    eval_every: int = 50
    projection: str = "cosine"


@dataclass
class Result:
    """One attacked prompt.

    Attributes:
        token_ids: the adversarial prompt's tokens (without start and end tokens).
        text: their decoded text, the prompt to render.
        loss: the noise-matching loss of ``token_ids`` over a fixed grid of 10 timesteps with noise fixed per prompt.
        start_loss: the same loss of the initial tokens.
        similarity: the best score at the evaluation steps (None: no ``score``).
        best_step: the updates the scored tokens had had when that score was reached, i.e. the step (from 0)
            whose forward pass used them, as the reference counts (None: no ``score``).
        retokenizes: whether ``text`` tokenizes back to ``token_ids``.
        history: the loss of each step (of the tokens it used).
    """

    token_ids: list[int]
    text: str
    loss: float
    start_loss: float
    similarity: float | None = None
    best_step: int | None = None
    retokenizes: bool = True
    history: list[float] = field(default_factory=list)


def layout(variant: str, words: Sequence[int], n: int, every: int, room: int = 75) -> list[int | None]:
    """The adversarial prompt's positions (start and end tokens excepted): None for a free token, else the fixed
    prompt token there. P4D-N: ``n`` free tokens; P4D-K: a free token before every ``every`` prompt tokens, the
    prompt's last tokens cut until all fit the encoder's ``room`` (the reference lets the sequence grow past it)."""
    if variant == "n":
        return [None] * n
    words = list(words)
    while words and len(words) + len(words) // every + 1 > room:
        words.pop()
    free = len(words) // every + 1
    slots: list[int | None] = []
    rest = list(words)
    for i in range(len(words) + free):
        slots.append(None if i % (every + 1) == 0 else rest.pop(0))
    return slots


class NoiseMatching:
    """The loss of P4D, per prompt: the unlearned model's noise prediction with the adversarial prompt against the
    original model's with the prompt."""

    def __init__(self, pipe, text: TextSide, original, original_text: TextSide):
        import torch

        self.unet, self.text = pipe.unet, text
        self.original_unet, self.original_text = original.unet, original_text
        scheduler = pipe.scheduler
        self.total = int(scheduler.config.num_train_timesteps)
        self.alphas = scheduler.alphas_cumprod.to(dtype=torch.float32)
        self.device, self.dtype = self.unet.device, self.unet.dtype
        self._prompt_states: tuple | None = None  # (prompt ids, their hidden states): the same at every step

    def prompt_states(self, prompt_ids):
        """The original encoder's hidden states of ``prompt_ids``, encoded once for the steps that share them."""
        import torch

        if self._prompt_states is None or self._prompt_states[0] is not prompt_ids:
            with torch.no_grad():
                states = self.original_text.encode(prompt_ids.to(self.original_unet.device))
            self._prompt_states = (prompt_ids, states)
        return self._prompt_states[1]

    def targets(self, latents, prompt_ids, t, noise):
        """The original model's noise predictions (B, C, h, w) and the noised latents they are made on."""
        import torch

        a = self.alphas[t.cpu()].to(self.device).view(-1, 1, 1, 1)
        noised = a.sqrt() * latents + (1 - a).sqrt() * noise
        hidden = self.prompt_states(prompt_ids)
        with torch.no_grad():
            unet = self.original_unet
            pred = unet(noised.to(unet.device, unet.dtype), t.to(unet.device), encoder_hidden_states=hidden).sample
        return pred.float().to(self.device), noised

    def __call__(self, noised, t, hidden, target):
        """Loss per prompt (B,) given the adversarial prompts' hidden states (B, L, D)."""
        pred = self.unet(noised.to(self.dtype), t.to(self.device), encoder_hidden_states=hidden).sample.float()
        return ((pred - target) ** 2).mean(dim=(1, 2, 3))


def _noise(generators, shape, device):
    import torch

    return torch.cat([torch.randn((1, *shape), generator=g) for g in generators]).to(device)


def attack_batch(
    pipe,
    text: TextSide,
    original,
    original_text: TextSide,
    prompts: Sequence[str],
    seeds: Sequence[int],
    latents,
    options: Options,
    score: Score | None = None,
) -> list[Result]:
    """Attack ``prompts`` together; each prompt's result is what it would be alone.

    Args:
        pipe, text: the unlearned pipeline (its UNet and scheduler) and its text side.
        original, original_text: the original pipeline and its text side (the targets' noise predictions).
        prompts: the prompt texts; seeds: one per prompt (initial tokens, timesteps, noise).
        latents: the target latents (B, C, h, w), scaled as the UNets see them.
        score: scores the decoded prompts every ``options.eval_every`` steps; the best-scoring one is kept.
    """
    import torch

    loss_of = NoiseMatching(pipe, text, original, original_text)
    device, n = loss_of.device, len(prompts)
    table, candidates = text.table, text.candidates
    room = text.max_length - 2
    slots = [layout(options.variant, text.words(p), options.tokens, options.every, room) for p in prompts]
    for b, s in enumerate(slots):
        text.check_tokens(len(s), f"p4d (prompt {b}: {len(s)} tokens with the free ones)")
    prompt_ids = torch.stack([torch.tensor(original_text.sequence(original_text.words(p))) for p in prompts])
    ids = [torch.tensor([text.sequence([int(candidates[0])] * len(s))], device=device) for s in slots]
    latents = latents.to(device=device, dtype=torch.float32)
    shape = tuple(latents.shape[1:])
    generators = [torch_generator(s) for s in seeds]
    start = [candidates[torch.randint(len(candidates), (s.count(None),), generator=g).to(device)]
             for s, g in zip(slots, generators, strict=True)]  # fmt: skip
    free = [table[x].float().clone().requires_grad_(True) for x in start]
    optimizer = torch.optim.AdamW(free, lr=options.lr, weight_decay=options.weight_decay)
    fixed = [[table[w].float() if w is not None else None for w in s] for s in slots]

    def hidden(tokens_of: Callable[[int], object]):
        """The adversarial prompts' hidden states; ``tokens_of(b)`` gives prompt b's free-token embeddings."""
        out = []
        for b in range(n):
            row, values = [], iter(tokens_of(b))
            for f in fixed[b]:
                row.append(next(values) if f is None else f)
            out.append(text.encode(ids[b], torch.stack(row)[None]))
        return torch.cat(out)

    def current(b: int):
        return nearest_tokens(free[b], text.vocab, candidates, options.projection)

    def token_ids(b: int, chosen) -> list[int]:
        values = iter(chosen.tolist())
        return [next(values) if w is None else w for w in slots[b]]

    history: list[list[float]] = []
    best: list[tuple[float, int, object] | None] = [None] * n
    for step in range(options.iterations):
        t = torch.tensor([int(torch.randint(loss_of.total, (1,), generator=g)) for g in generators])
        noise = _noise(generators, shape, device)
        target, noised = loss_of.targets(latents, prompt_ids, t, noise)
        chosen = [current(b) for b in range(n)]
        hard = [table[chosen[b]].float() for b in range(n)]
        used = [free[b] + (hard[b] - free[b]).detach() for b in range(n)]  # real tokens forward, gradient to soft
        losses = loss_of(noised, t, hidden(lambda b: used[b]), target)  # noqa: B023 - called right here
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # a sum: each prompt's gradient is what it would be alone
        optimizer.step()
        history.append(losses.detach().cpu().tolist())
        if score is not None and step % options.eval_every == 0:
            # the reference scores the tokens this step's forward used (projected before the update)
            texts = [text.decode(token_ids(b, chosen[b])) for b in range(n)]
            for b, value in enumerate(score(list(range(n)), texts)):
                if best[b] is None or value > best[b][0]:
                    best[b] = (float(value), step, chosen[b].clone())
    final = [best[b][2] if best[b] is not None else current(b) for b in range(n)]
    end_loss = evaluate(loss_of, latents, prompt_ids, hidden, [table[f].float() for f in final], seeds)
    start_loss = evaluate(loss_of, latents, prompt_ids, hidden, [table[x].float() for x in start], seeds)
    out = []
    for b in range(n):
        ids_b = token_ids(b, final[b])
        written = text.decode(ids_b)
        out.append(
            Result(
                ids_b,
                written,
                float(end_loss[b]),
                float(start_loss[b]),
                None if best[b] is None else best[b][0],
                None if best[b] is None else best[b][1],
                text.sequence(text.words(written)) == text.sequence(ids_b),
                [h[b] for h in history],
            )  # fmt: skip
        )
    return out


def evaluate(loss_of: NoiseMatching, latents, prompt_ids, hidden, tokens: list, seeds: Sequence[int]):
    """Mean loss (B,) of the free-token embeddings ``tokens`` over 10 grid timesteps, noise fixed by each seed."""
    import torch

    generators = [torch_generator(s ^ 0x5EED) for s in seeds]  # a stream apart from the optimisation's
    total = torch.zeros(len(seeds), device=loss_of.device)
    grid = timestep_grid(10, loss_of.total)
    with torch.no_grad():
        states = hidden(lambda b: tokens[b])
        for timestep in grid:
            t = torch.full((len(seeds),), timestep, dtype=torch.long)
            noise = _noise(generators, tuple(latents.shape[1:]), loss_of.device)
            target, noised = loss_of.targets(latents, prompt_ids, t, noise)
            total += loss_of(noised, t, states, target)
    return (total / len(grid)).cpu()


class ImageSimilarity:
    """The cosine of CLIP image features (``get_image_features``) of two images, as P4D's ``measure_similarity``
    (there with open_clip's ViT-H-14 laion2b_s32b_b79k; its transformers copy is the default here)."""

    def __init__(self, model: str, device: str):
        from transformers import CLIPModel, CLIPProcessor

        self.processor = CLIPProcessor.from_pretrained(model)
        self.model = CLIPModel.from_pretrained(model).to(device).eval()
        self.device = device

    def features(self, images: Sequence):
        import torch

        with torch.no_grad():
            pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
            out = self.model.get_image_features(pixel_values=pixels)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(out.float(), dim=-1)

    def __call__(self, images_a: Sequence, images_b: Sequence) -> list[float]:
        return (self.features(images_a) * self.features(images_b)).sum(dim=-1).cpu().tolist()


def check_pipelines(pipe, original, who: str) -> None:
    """Refuse pipelines P4D cannot use: both need a UNet conditioned on one CLIP text encoder, with the same latent
    shape and noise schedule."""
    from .unlearndiffatk import check_pipeline

    check_pipeline(pipe, who)
    check_pipeline(original, f"{who} (its original)")
    if pipe.unet.config.in_channels != original.unet.config.in_channels:
        raise ValueError(f"Model {who!r} and its original have different latents; p4d needs the same VAE space")
