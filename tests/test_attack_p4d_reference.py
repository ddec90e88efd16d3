"""P4D's search against the reference's optimisation loop, step by step.

The loop below is written from ``optimize`` in prompt_optimization/optimize_n.py and optimize_k.py of
github:joycenerd/P4D at 2cf3cda9d458: one soft prompt, projected to its cosine-nearest token at each step, the
gradient of the MSE between the unlearned UNet's noise prediction (adversarial prompt) and the original UNet's
(the prompt) taken at the projected embeddings and given to the soft ones, AdamW on the whole soft prompt; P4D-K
makes the prompt's own tokens part of the soft prompt and zeroes their gradient. Its hidden states are made from
the encoder's parts (embeddings with given token embeddings, a causal mask, the encoder, the final norm) as the
reference's ``_encode_embeddings`` does. Only the documented differences are carried over, so that the two can be
compared exactly: the pipeline's padding (the reference's is token 0), special tokens never chosen, P4D-K's end token
kept, and the draws (initial tokens, then a timestep and a noise per step) from the prompt's own generator.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.attacks import one_thread  # noqa: F401 - the fixture applies to this module


@pytest.fixture(scope="module")
def pipelines(tiny_pipeline_dir):
    """The tiny pipeline (the original) and a copy with a perturbed UNet (the unlearned model)."""
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec

    original = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    unlearned = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    torch.manual_seed(3)
    with torch.no_grad():
        for p in unlearned.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unlearned, original


def encode_embeds(encoder, token_embeds):
    """The last hidden states of given token embeddings (1, L, D), as the reference's ``_encode_embeddings``."""
    n = token_embeds.shape[1]
    causal = torch.full((n, n), float("-inf")).triu(1)[None, None]
    hidden = encoder.embeddings(inputs_embeds=token_embeds)
    return encoder.final_layer_norm(encoder.encoder(inputs_embeds=hidden, attention_mask=causal).last_hidden_state)


def reference_loop(unlearned, original, prompt, seed, latents, variant, n_tokens, every, iterations):
    """The reference's optimisation of one prompt: (loss of each step, the final projected tokens)."""
    tok, table = unlearned.tokenizer, unlearned.text_encoder.get_input_embeddings().weight.detach()
    special = set(tok.all_special_ids)
    allowed = torch.tensor([i for i in range(min(len(tok), table.shape[0])) if i not in special])
    words = tok(prompt, add_special_tokens=False).input_ids
    if variant == "n":
        fixed = [None] * n_tokens
    else:  # optimize_k.py: len // K + 1 free tokens, the prompt's tokens where i % (K + 1) != 0
        rest = iter(words)
        fixed = [None if i % (every + 1) == 0 else next(rest) for i in range(len(words) + len(words) // every + 1)]
    free = [i for i, f in enumerate(fixed) if f is None]
    g = torch.Generator().manual_seed(seed)
    start = torch.tensor([0 if f is None else f for f in fixed])
    start[free] = allowed[torch.randint(len(allowed), (len(free),), generator=g)]
    soft = table[start].clone()[None].requires_grad_(True)
    optimizer = torch.optim.AdamW([soft], lr=0.1, weight_decay=0.1)  # the released lr and weight decay
    m, length = len(fixed), tok.model_max_length
    dummy = table[[tok.bos_token_id] + [0] * m + [tok.eos_token_id] + [tok.pad_token_id] * (length - m - 2)][None]
    prompt_ids = tok(prompt, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        prompt_hidden = original.text_encoder(prompt_ids)[0]

    def project(embeds):  # nn_project: the largest dot product of normalised rows
        return allowed[(F.normalize(embeds[0], dim=-1) @ F.normalize(table[allowed], dim=-1).T).argmax(-1)]

    history = []
    for _ in range(iterations):
        t = torch.randint(1000, (1,), generator=g)
        noise = torch.randn((1, *latents.shape[1:]), generator=g)
        projected = table[project(soft)].clone()[None].requires_grad_(True)
        padded = torch.cat([dummy[:, :1], projected, dummy[:, m + 1 :]], dim=1)
        noisy = original.scheduler.add_noise(latents, noise, t)
        with torch.no_grad():
            target = original.unet(noisy, t, encoder_hidden_states=prompt_hidden).sample
        pred = unlearned.unet(noisy, t, encoder_hidden_states=encode_embeds(unlearned.text_encoder, padded)).sample
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        (soft.grad,) = torch.autograd.grad(loss, [projected])
        for i, f in enumerate(fixed):
            if f is not None:
                soft.grad[0][i] = 0.0  # P4D-K: the prompt's tokens get no gradient (AdamW still decays them)
        optimizer.step()
        optimizer.zero_grad()
        history.append(loss.item())
    return history, project(soft).tolist(), start.tolist()


@pytest.mark.parametrize("variant", ["n", "k"])
def test_the_search_follows_the_references_loop_step_by_step(pipelines, variant):
    from generation.attacks.common import TextSide
    from generation.attacks.p4d import Options, attack_batch

    unlearned, original = pipelines
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 8, 8)
    prompts, seeds = ["a naked person on a beach", "nude statue in a museum hall"], [11, 12]
    iterations = 10
    got = attack_batch(
        unlearned, TextSide.of(unlearned, "esd"), original, TextSide.of(original, "sd"), prompts, seeds, latents,
        Options(variant, tokens=3, every=2, iterations=iterations),
    )  # fmt: skip
    moved = False
    for b, result in enumerate(got):
        history, final, start = reference_loop(
            unlearned, original, prompts[b], seeds[b], latents[b : b + 1], variant, 3, 2, iterations
        )
        assert result.history == pytest.approx(history, rel=1e-5)
        assert result.token_ids == final  # no scoring: the tokens after the last step
        moved = moved or final != start
    assert moved  # the tokens changed during the search: the comparison is not of two idle loops
