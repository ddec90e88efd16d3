"""UnlearnDiffAtk, the hard-prompt variant: K adversarial tokens prepended to a prompt, optimised so that the
*unlearned* model, used as its own classifier, denoises noised latents of a target image of the concept well.

Zhang et al., "To Generate or Not? Safety-Driven Unlearned Diffusion Models Are Still Easy To Generate Unsafe
Images ... For Now", ECCV 2024 (arXiv:2310.11868). For a prompt c, a target image x0 (by default the original
model's image for the same prompt and seed) and the unlearned noise predictor eps_u, the attack minimises over the
adversarial tokens d the denoising loss E_{t, eps} ||eps_u(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t, [d; c]) - eps||^2.

Here the K tokens are continuous input embeddings optimised with Adam; each step's forward pass uses their
nearest vocabulary tokens (by cosine similarity, as ``project`` in src/attackers/hard_prompt_.py of
OPTML-Group/Diffusion-MU-Attack at 5a3e5d3 and ``nn_project`` of Wen et al., "Hard Prompts Made Easy", NeurIPS
2023) and the gradient flows straight through to the continuous embeddings, so the result is a prompt of real
tokens. The released UnlearnDiffAtk attacker (src/attackers/text_grad_.py) relaxes the tokens to a distribution over
the vocabulary instead.

Checkpoints, as released (text_grad_.py ``run``): given a ``checkpoint`` callable (the runner's: render the prompt
with the attacked model and ask a judge), the prompt is judged before the attack and the decoded adversarial prompt
after each block of ``iterations`` steps (each grid timestep); a prompt's attack stops at its first flagged image,
whose tokens are its result. The released code renders a checkpoint from its decoded text re-tokenised
(``eval`` in src/tasks/classifier_.py embeds ``tokenizer(prompt)``), and so does ``checkpoint`` here. Without a
judge every step runs and the result is the last step's tokens.

The decoded text does not always re-tokenise to the optimised ids (a token without an end-of-word mark followed
by a space, a capital letter the tokenizer lowercases, ...). Each result says whether it does (``retokenizes``) and
the loss of the ids the text actually renders to (``loss_rendered``) beside the loss of the optimised ids.

Every prompt draws its initial tokens, its noise and (``random`` schedule) its timesteps from its own generator,
and Adam is elementwise, so a prompt's result does not depend on the batch it is in (up to float rounding).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .common import TextSide, nearest_tokens, torch_generator
from .config import TRAIN_TIMESTEPS

logger = logging.getLogger(__name__)


def timestep_grid(n: int, total: int = TRAIN_TIMESTEPS) -> list[int]:
    """``n`` evenly spaced timesteps centred in their bins: 10, 30, ..., 990 for n = 50 (the released grid)."""
    step = total // n
    return [step // 2 + i * step for i in range(n)]


@dataclass
class Options:
    """The attack's settings (see :class:`generation.attacks.config.AttackConfig` for their published values)."""

    tokens: int = 5
    iterations: int = 40
    timesteps: int = 50
    schedule: str = "sequential"
    lr: float = 0.01
    weight_decay: float = 0.1
    projection: str = "cosine"


@dataclass
class Result:
    """One attacked prompt.

    Attributes:
        token_ids: the K adversarial tokens, in prompt order.
        adversarial_text: the decoded tokens (prepend them to the prompt).
        text: the adversarial prompt as written: ``adversarial_text`` and the prompt, joined by a space.
        loss: the mean denoising loss of the final tokens over the timestep grid, with noise fixed per prompt.
        start_loss: the same loss for the initial (random) tokens.
        retokenizes: whether ``text`` tokenizes back to the optimised ids followed by the prompt's.
        loss_rendered: the same loss for the ids ``text`` tokenizes to (what a pipeline given the text renders).
        history: the loss of each optimisation step (of the tokens it used).
        flagged_before: the judge flagged the prompt's image before the attack (None: no judge).
        flagged_at: optimisation steps done at the first checkpoint whose image was flagged (None: none was).
        checkpoints: checkpoints judged after the start.
    """

    token_ids: list[int]
    adversarial_text: str
    loss: float
    start_loss: float
    history: list[float] = field(default_factory=list)
    text: str = ""
    retokenizes: bool = True
    loss_rendered: float = float("nan")
    flagged_before: bool | None = None
    flagged_at: int | None = None
    checkpoints: int = 0


class DenoisingLoss:
    """The unlearned model's denoising loss of target latents, per prompt."""

    def __init__(self, pipe, text: TextSide):
        import torch

        self.unet, self.text = pipe.unet, text
        scheduler = pipe.scheduler
        self.total = int(scheduler.config.num_train_timesteps)
        self.alphas = scheduler.alphas_cumprod.to(dtype=torch.float32)
        self.v_prediction = getattr(scheduler.config, "prediction_type", "epsilon") == "v_prediction"
        self.device = self.unet.device
        self.dtype = self.unet.dtype

    def __call__(self, latents, ids, adversarial, t, noise):
        """Loss per prompt (B,) of latents (B, C, h, w) at timesteps ``t`` (B,) with ``noise`` like the latents."""
        a = self.alphas[t.cpu()].to(self.device).view(-1, 1, 1, 1)
        noised = a.sqrt() * latents + (1 - a).sqrt() * noise
        hidden = self.text.encode(ids, adversarial)
        pred = self.unet(noised.to(self.dtype), t.to(self.device), encoder_hidden_states=hidden).sample.float()
        target = a.sqrt() * noise - (1 - a).sqrt() * latents if self.v_prediction else noise
        return ((pred - target) ** 2).mean(dim=(1, 2, 3))


def _noise(generators, shape, device):
    import torch

    return torch.cat([torch.randn((1, *shape), generator=g) for g in generators]).to(device)


# Judge the texts of the batch's prompts at ``indices``: True where the judge flags the attacked model's image.
Checkpoint = Callable[[list[int], list[str]], list[bool]]


def rendered_text(text: TextSide, token_ids: Sequence[int], prompt: str) -> str:
    """The adversarial prompt as written: the decoded tokens, a space, the prompt."""
    return f"{text.decode(token_ids)} {prompt}".strip()


def retokenizes(text: TextSide, token_ids: Sequence[int], prompt: str) -> bool:
    """Whether the written prompt tokenizes back to ``token_ids`` followed by the prompt's own ids."""
    written = text.words(rendered_text(text, token_ids, prompt))
    return text.sequence(written) == text.sequence([*token_ids, *text.words(prompt)])


def attack_batch(
    pipe,
    text: TextSide,
    prompts: Sequence[str],
    seeds: Sequence[int],
    latents,
    options: Options,
    checkpoint: Checkpoint | None = None,
) -> list[Result]:
    """Attack ``prompts`` together; each prompt's result is what it would be alone.

    Args:
        pipe: the unlearned Stable Diffusion pipeline (its UNet and scheduler).
        text: its text side.
        prompts: the prompt texts.
        seeds: one seed per prompt (initial tokens, noise, timesteps).
        latents: the target latents (B, C, h, w), scaled as the UNet sees them.
        options: the attack's settings.
        checkpoint: judges prompts before the attack and after every ``options.iterations`` steps; a prompt stops
            at its first flagged checkpoint (see the module docstring).
    """
    import torch

    loss_of = DenoisingLoss(pipe, text)
    device, k, n = loss_of.device, options.tokens, len(prompts)
    table, candidates = text.table, text.candidates
    placeholder = int(candidates[0])  # any real token: its embedding is replaced
    ids = torch.tensor([text.sequence([placeholder] * k + text.words(p)) for p in prompts], device=device)
    latents = latents.to(device=device, dtype=torch.float32)
    shape = tuple(latents.shape[1:])
    generators = [torch_generator(s) for s in seeds]
    start = torch.stack([candidates[torch.randint(len(candidates), (k,), generator=g).to(device)] for g in generators])
    adversarial = table[start].float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([adversarial], lr=options.lr, weight_decay=options.weight_decay)
    grid = timestep_grid(options.timesteps, loss_of.total)
    history: list[list[float]] = []
    before = list(checkpoint(list(range(n)), list(prompts))) if checkpoint else [None] * n
    stopped: list[int | None] = [None] * n  # steps done when a prompt's checkpoint was first flagged
    kept = [None] * n  # the tokens of that checkpoint
    judged = [0] * n
    for step in range(options.timesteps * options.iterations):
        if options.schedule == "sequential":
            t = torch.full((n,), grid[step // options.iterations], dtype=torch.long)
        else:
            t = torch.tensor([grid[int(torch.randint(len(grid), (1,), generator=g))] for g in generators])
        noise = _noise(generators, shape, device)
        hard = table[nearest_tokens(adversarial, text.vocab, candidates, options.projection)].float()
        used = adversarial + (hard - adversarial).detach()  # forward with real tokens, gradient to the embeddings
        losses = loss_of(latents, ids, used, t, noise)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # a sum, not a mean: each prompt's gradient is what it would be alone
        optimizer.step()
        history.append(losses.detach().cpu().tolist())
        if checkpoint is not None and (step + 1) % options.iterations == 0:
            running = [b for b in range(n) if stopped[b] is None]
            current = nearest_tokens(adversarial, text.vocab, candidates, options.projection)
            texts = [rendered_text(text, current[b].tolist(), prompts[b]) for b in running]
            for b, flagged in zip(running, checkpoint(running, texts), strict=True):
                judged[b] += 1
                if flagged:
                    stopped[b], kept[b] = step + 1, current[b].clone()
            if all(s is not None for s in stopped):
                break
    final = nearest_tokens(adversarial, text.vocab, candidates, options.projection)
    for b in range(n):
        if kept[b] is not None:
            final[b] = kept[b]
    end_loss = evaluate(loss_of, latents, ids, final, seeds, grid)
    start_loss = evaluate(loss_of, latents, ids, start, seeds, grid)
    written = [rendered_text(text, final[b].tolist(), prompts[b]) for b in range(n)]
    written_ids = torch.tensor([text.sequence(text.words(w)) for w in written], device=device)
    rendered_loss = evaluate(loss_of, latents, written_ids, None, seeds, grid)
    return [
        Result(
            final[b].tolist(),
            text.decode(final[b].tolist()),
            float(end_loss[b]),
            float(start_loss[b]),
            [h[b] for h in history[: stopped[b] or len(history)]],
            text=written[b],
            retokenizes=retokenizes(text, final[b].tolist(), prompts[b]),
            loss_rendered=float(rendered_loss[b]),
            flagged_before=None if before[b] is None else bool(before[b]),
            flagged_at=stopped[b],
            checkpoints=judged[b],
        )
        for b in range(n)
    ]


def evaluate(loss_of: DenoisingLoss, latents, ids, tokens, seeds: Sequence[int], grid: Sequence[int]):
    """Mean loss (B,) of adversarial ``tokens`` (B, K) over ``grid``, with noise fixed by each prompt's seed;
    ``tokens`` None: the loss of ``ids`` as they are (no embedding replaced)."""
    import torch

    generators = [torch_generator(s ^ 0x5EED) for s in seeds]  # a stream apart from the optimisation's
    embeddings = None if tokens is None else loss_of.text.table[tokens].float()
    total = torch.zeros(len(seeds), device=loss_of.device)
    with torch.no_grad():
        for timestep in grid:
            t = torch.full((len(seeds),), timestep, dtype=torch.long)
            total += loss_of(latents, ids, embeddings, t, _noise(generators, tuple(latents.shape[1:]), loss_of.device))
    return (total / len(grid)).cpu()


# ---------------------------------------------------------------- target images


def render_targets(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance: float) -> list:
    """The original model's images (PIL) of ``prompts``, one CPU generator per seed as ``dataigm generate`` does."""
    import torch

    out = pipe(
        prompt=list(prompts),
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        num_inference_steps=steps,
        guidance_scale=guidance,
        output_type="pil",
    )
    return list(out.images)


def encode_targets(pipe, images: Sequence) -> object:
    """Latents (B, C, h, w) of PIL images at the pipeline's default size, scaled as its UNet sees them."""
    import numpy as np
    import torch

    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    arrays = [np.asarray(im.convert("RGB").resize((size, size), resample=3), dtype=np.float32) for im in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1
    vae = pipe.vae
    with torch.no_grad():
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mean.float()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def check_pipeline(pipe, who: str) -> None:
    """Refuse a pipeline this attack cannot use: it needs a UNet conditioned on one CLIP text encoder and a VAE."""
    unet, vae = getattr(pipe, "unet", None), getattr(pipe, "vae", None)
    if unet is None or vae is None:
        raise ValueError(
            f"Model {who!r}: unlearndiffatk needs a UNet and a VAE (a Stable Diffusion pipeline); got "
            f"{type(pipe).__name__} (ring_a_bell needs only a text encoder)"
        )
    if getattr(unet.config, "addition_embed_type", None) is not None:
        raise ValueError(
            f"Model {who!r}: its UNet takes extra conditioning ({unet.config.addition_embed_type}, e.g. SDXL); "
            "unlearndiffatk supports Stable Diffusion 1.x/2.x pipelines"
        )
