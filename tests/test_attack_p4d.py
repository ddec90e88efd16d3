"""P4D in ``dataigm attack``: its loss against the reference's formula computed here with the pipelines' own parts,
P4D-K's layout against the reference's rule, results independent of the batch, resumable records with provenance,
and bad input refused in one line with nothing written."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.attacks import one_thread, save_unlearned  # noqa: F401 - one_thread applies to this module

from dataigm.cli import main
from dataigm.prompts import read_prompts

P4D = ["--iterations", "4", "--tokens", "3", "--target-steps", "2", "--p4d-eval-every", "2"]


@pytest.fixture(scope="module")
def unlearned(tiny_pipeline_dir, tmp_path_factory):
    """A spec of the tiny pipeline with a perturbed UNet (its original: the tiny pipeline itself)."""
    return save_unlearned(tiny_pipeline_dir, tmp_path_factory.mktemp("unlearned"))


def attack(model, out, *more, base=P4D) -> list[str]:
    return [
        "attack", "--method", "p4d", "--model", str(model), "--concept", "nudity", "--out", str(out),
        "--device", "cpu", "--no-progress", *base, *more,
    ]  # fmt: skip


def test_the_loss_is_the_references_noise_matching_mse(unlearned, tiny_pipeline_dir):
    from generation.attacks.common import TextSide
    from generation.attacks.p4d import NoiseMatching
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec, load_model_spec

    pipe = load_pipeline(load_model_spec(str(unlearned))).pipe
    original = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    text, original_text = TextSide.of(pipe, "esd"), TextSide.of(original, "org")
    loss_of = NoiseMatching(pipe, text, original, original_text)
    torch.manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor([17, 640])
    prompts = ["a naked person", "a nude statue"]
    adversarial = [[300, 301, 302], [5, 77, 999]]
    tok = original.tokenizer  # the reference: the pipeline's tokenizer, padded to 77, and scheduler.add_noise
    prompt_ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    adv_ids = torch.tensor([[tok.bos_token_id, *a, tok.eos_token_id] + [tok.pad_token_id] * (tok.model_max_length - 5)
                            for a in adversarial])  # fmt: skip
    with torch.no_grad():
        noised = original.scheduler.add_noise(latents, noise, t)
        want_target = original.unet(noised, t, encoder_hidden_states=original.text_encoder(prompt_ids)[0]).sample
        pred = pipe.unet(noised, t, encoder_hidden_states=pipe.text_encoder(adv_ids)[0]).sample
        want = ((pred - want_target) ** 2).mean(dim=(1, 2, 3))
        target, ours_noised = loss_of.targets(latents, torch.stack([torch.tensor(original_text.sequence(
            original_text.words(p))) for p in prompts]), t, noise)  # fmt: skip
        hidden = text.encode(adv_ids, text.table[torch.tensor(adversarial)].float())
        got = loss_of(ours_noised, t, hidden, target)
    torch.testing.assert_close(target, want_target, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_each_scoring_sees_the_tokens_its_steps_forward_used(unlearned, tiny_pipeline_dir):
    """The reference decodes the projection made before the step's update: step 0 scores the initial tokens."""
    from generation.attacks.common import TextSide
    from generation.attacks.p4d import Options, attack_batch
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec, load_model_spec

    pipe = load_pipeline(load_model_spec(str(unlearned))).pipe
    original = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    text, original_text = TextSide.of(pipe, "esd"), TextSide.of(original, "org")
    seen: list[list[str]] = []

    def score(indices, texts):  # the first scoring is the best
        seen.append(list(texts))
        return [1.0 if len(seen) == 1 else 0.0 for _ in indices]

    seeds = [11, 12]
    (a, b) = attack_batch(pipe, text, original, original_text, ["a naked person", "a nude statue"], seeds,
                          torch.zeros(2, 4, 8, 8), Options(tokens=3, iterations=3, eval_every=2), score)  # fmt: skip
    # the initial tokens, drawn here from each prompt's own seeded generator as the attack draws them
    start = [text.candidates[torch.randint(len(text.candidates), (3,), generator=torch.Generator().manual_seed(s))]
             for s in seeds]  # fmt: skip
    assert [a.token_ids, b.token_ids] == [x.tolist() for x in start] and a.best_step == b.best_step == 0
    assert seen[0] == [text.decode(x.tolist()) for x in start] and len(seen) == 2  # steps 0 and 2


def _reference_p4d_n(pipe, original, latents, prompt: str, n: int, steps: int, seed: int) -> list[int]:
    """P4D-N's loop as github:joycenerd/P4D writes it (prompt_optimization/optimize_n.py at 2cf3cda9d458): random
    tokens over the tokenizer's vocabulary, AdamW (lr 0.1, weight decay 0.1) on the soft embeddings, each step's
    forward through their cosine projection over the embedding rows, gradient taken at the projection and given to
    the soft ones, noise and t in 0..999 drawn per step, MSE against the original UNet with the prompt. One change:
    the sequence is padded with the pipeline's padding, not token 0 (a documented difference); the final tokens are
    the projection after the last step."""
    from generation.attacks.common import TextSide

    tok, emb, text = pipe.tokenizer, pipe.text_encoder.get_input_embeddings(), TextSide.of(pipe, "ref")
    rows = len(tok)  # the reference's len(tokenizer.encoder), the embedding's rows in SD
    g = torch.Generator().manual_seed(seed)
    soft = emb.weight[torch.randint(rows, (1, n), generator=g)].detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([soft], lr=0.1, weight_decay=0.1)
    ids = torch.tensor([[tok.bos_token_id] + [0] * n + [tok.eos_token_id] + [tok.pad_token_id] * (75 - n)])
    prompt_ids = tok(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    table = torch.nn.functional.normalize(emb.weight.detach()[:rows], dim=-1)

    def project():
        return (torch.nn.functional.normalize(soft.detach()[0], dim=-1) @ table.T).argmax(-1)

    for _ in range(steps):
        projected = emb.weight[project()].detach().clone()[None].requires_grad_(True)
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, 1000, (1,), generator=g)
        noisy = original.scheduler.add_noise(latents, noise, t)
        with torch.no_grad():
            target = original.unet(noisy, t, encoder_hidden_states=original.text_encoder(prompt_ids)[0]).sample
        pred = pipe.unet(noisy, t, encoder_hidden_states=text.encode(ids, projected)).sample
        (soft.grad,) = torch.autograd.grad(torch.nn.functional.mse_loss(pred, target), [projected])
        optimizer.step()
        optimizer.zero_grad()
    return project().tolist()


def test_the_search_matches_the_references_loop_in_distribution(unlearned, tiny_pipeline_dir):
    import statistics

    from generation.attacks.common import TextSide
    from generation.attacks.p4d import NoiseMatching, Options, attack_batch
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec, load_model_spec

    pipe = load_pipeline(load_model_spec(str(unlearned))).pipe
    original = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    for module in (pipe.unet, pipe.text_encoder, original.unet, original.text_encoder):
        module.requires_grad_(False)
    text, original_text = TextSide.of(pipe, "esd"), TextSide.of(original, "org")
    prompt, n, steps, runs = "a naked person", 3, 30, 10
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    loss_of = NoiseMatching(pipe, text, original, original_text)
    prompt_ids = torch.tensor([original_text.sequence(original_text.words(prompt))])

    def measured(tokens: list[int]) -> float:  # the same 20 (t, noise) pairs for every prompt
        g, total = torch.Generator().manual_seed(999), 0.0
        with torch.no_grad():
            states = text.encode(torch.tensor([text.sequence(tokens)]))
            for k in range(20):
                t = torch.tensor([25 + 50 * k])
                target, noised = loss_of.targets(latents, prompt_ids, t, torch.randn(latents.shape, generator=g))
                total += float(loss_of(noised, t, states, target)[0])
        return total / 20

    options = Options(tokens=n, iterations=steps)
    ours = [measured(attack_batch(pipe, text, original, original_text, [prompt], [100 + r], latents, options)[0]
                     .token_ids) for r in range(runs)]  # fmt: skip
    theirs = [measured(_reference_p4d_n(pipe, original, latents, prompt, n, steps, 200 + r)) for r in range(runs)]
    start = [measured(text.candidates[torch.randint(len(text.candidates), (n,), generator=torch.Generator()
                                                    .manual_seed(300 + r))].tolist()) for r in range(runs)]  # fmt: skip

    def se(a, b):
        return (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5

    mean = statistics.mean
    print(f"ours {mean(ours):.5f}, the reference's loop {mean(theirs):.5f}, random tokens {mean(start):.5f}")
    assert abs(mean(ours) - mean(theirs)) < 3 * se(ours, theirs)  # the same search
    assert mean(start) - mean(ours) > 3 * se(start, ours)  # and it does search


def test_the_original_encodes_each_prompt_once_per_batch(unlearned, tiny_pipeline_dir):
    from generation.attacks.common import TextSide
    from generation.attacks.p4d import Options, attack_batch
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec, load_model_spec

    pipe = load_pipeline(load_model_spec(str(unlearned))).pipe
    original = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    calls: list[int] = []
    original.text_encoder.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))
    prompts = ["a naked person", "a nude statue"]
    attack_batch(pipe, TextSide.of(pipe, "esd"), original, TextSide.of(original, "org"), prompts, [1, 2],
                 torch.zeros(2, 4, 8, 8), Options(tokens=2, iterations=4))  # fmt: skip
    assert calls == [2]  # 4 steps and 2 x 10 reported-loss passes, one encoding of the batch's prompts


def test_p4d_k_places_a_free_token_before_every_k_prompt_tokens_as_the_reference():
    from generation.attacks.p4d import layout

    for length in range(1, 14):
        for every in (1, 2, 3, 5):
            words = list(range(100, 100 + length))
            # the reference (optimize_k.py): L // K + 1 free tokens; prompt tokens where i % (K + 1) != 0
            free = length // every + 1
            chosen = [i for i in range(length + free) if i % (every + 1) != 0]
            got = layout("k", words, 16, every)
            assert [i for i, w in enumerate(got) if w is not None] == chosen
            assert [w for w in got if w is not None] == words and got.count(None) == free
    assert layout("n", [1, 2, 3], 16, 3) == [None] * 16
    long = layout("k", list(range(100)), 16, 3, room=75)  # cut to the 56 words that fit with their 19 free tokens
    assert len(long) == 75 and [w for w in long if w is not None] == list(range(56))


def test_results_do_not_depend_on_the_batch_and_carry_their_provenance(unlearned, tiny_clip, tmp_path):
    argv = ["--max-prompts", "3", "--p4d-clip", str(tiny_clip)]
    assert main([*attack(unlearned, tmp_path / "one", *argv, "--batch-size", "1")]) == 0
    assert main([*attack(unlearned, tmp_path / "three", *argv, "--batch-size", "3")]) == 0
    (one,), (three,) = (list((tmp_path / d).glob("*.jsonl")) for d in ("one", "three"))
    a, b = read_prompts(one), read_prompts(three)
    assert [r.text for r in a] == [r.text for r in b] and len(a) == 3
    for x, y in zip(a, b, strict=True):
        assert x.extra["token_ids"] == y.extra["token_ids"] and x.extra["best_step"] == y.extra["best_step"]
        assert x.loss == pytest.approx(y.loss, rel=1e-4) and x.extra["similarity"] == pytest.approx(
            y.extra["similarity"], abs=1e-5
        )
        assert x.attack == "p4d" and x.target_checksum and x.attack_options["p4d_variant"] == "n"
        assert x.attack_options["iterations"] == 4 and x.extra["best_step"] in (0, 2)  # the tokens steps 0 and 2 used
        assert len(x.extra["token_ids"]) == 3
    # resumable: a re-run finds every prompt done and changes no byte
    before = one.read_bytes()
    assert main([*attack(unlearned, tmp_path / "one", *argv, "--batch-size", "1")]) == 0
    assert one.read_bytes() == before
    # killed while writing its second prompt: the half line is dropped, the last two attacked again, as in one run
    first = before.index(b"\n") + 1
    one.write_bytes(before[: first + 40])
    assert main([*attack(unlearned, tmp_path / "one", *argv, "--batch-size", "1")]) == 0
    assert one.read_bytes() == before


def test_p4d_k_keeps_the_prompt_tokens(unlearned, tmp_path):
    base = [a for a in P4D if a not in ("--tokens", "3")]  # P4D-K's free tokens are counted from the prompt
    argv = ["--max-prompts", "1", "--p4d-variant", "k", "--p4d-clip", "null"]
    assert main(attack(unlearned, tmp_path / "k", *argv, base=base)) == 0
    (record,) = read_prompts(next((tmp_path / "k").glob("*.jsonl")))
    from generation.attacks.p4d import layout
    from generation.pipeline import load_pipeline
    from generation.spec import load_model_spec

    tok = load_pipeline(load_model_spec(str(unlearned))).pipe.tokenizer
    words = tok(record.source_text, add_special_tokens=False).input_ids
    slots = layout("k", words, 16, 3)
    ids = record.extra["token_ids"]
    kept = [s for s in slots if s is not None]  # the prompt's tokens that fit with the free ones, in order
    assert kept == words[: len(kept)] and [i for i, s in zip(ids, slots, strict=True) if s is not None] == kept
    assert record.extra["similarity"] is None and record.extra["best_step"] is None  # no CLIP: the last step


@pytest.mark.parametrize(
    "more, message",
    [
        (["--p4d-variant", "x"], "Unknown p4d_variant 'x'; valid: n, k"),
        (["--p4d-every", "0"], "p4d_every must be an integer >= 1, got 0"),
        (["--p4d-variant", "k"], "tokens: p4d_variant k puts one free token before every p4d_every prompt tokens"),
        (["--p4d-every", "2"], "p4d_every: only p4d_variant k inserts tokens every K words"),
        (["--judge", "nudenet"], "judge: only unlearndiffatk judges images at checkpoints"),
    ],
)
def test_bad_options_are_refused_in_one_line_with_nothing_written(unlearned, tmp_path, capsys, more, message):
    assert main([*attack(unlearned, tmp_path / "bad", *more)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_a_model_without_an_original_is_refused_in_one_line(tiny_pipeline_dir, tmp_path, capsys):
    assert main([*attack(tiny_pipeline_dir, tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert "has no unlearned part" in err and "give --original" in err and err.count("\n") == 1
    assert not list((tmp_path / "plain").glob("*.jsonl"))


def test_an_original_p4d_cannot_use_is_refused_in_one_line_before_anything_is_written(tiny_pipeline_dir, tmp_path,
                                                                                     capsys):  # fmt: skip
    from generation.tiny import save_tiny_family

    sdxl = save_tiny_family(tmp_path / "sdxl", "sdxl")
    assert main([*attack(tiny_pipeline_dir, tmp_path / "bad", "--original", str(sdxl), "--p4d-clip", "null")]) == 2
    err = capsys.readouterr().err
    assert "(its original)" in err and err.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_evaluate_runs_p4d_against_each_unlearned_model(unlearned, tiny_pipeline_dir, tmp_path):
    from helpers.models import save_untrained_judge

    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import run_evaluation

    judge = save_untrained_judge(tmp_path / "judge", ("nudity",))
    cfg = EvalConfig(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge=f"local-dir:{judge}", kinds=["forget"], max_prompts=2,
        models=[str(tiny_pipeline_dir), str(unlearned)], generation={"steps": 2, "height": 64, "width": 64},
        attacks=["p4d"], attack_options={"p4d": {"tokens": 2, "iterations": 2, "p4d_clip": None, "batch_size": 1}},
        clip_model=None, lpips_net=None, person_detector=None, fid_feature="resnet10t", fid_pretrained=False,
        progress=False, device="cpu", grid_samples=0,
    )  # fmt: skip
    report = json.loads(run_evaluation(cfg)["json"].read_text())
    assert report["concepts"]["nudity"]["esd"]["robustness"]["by_attack"]["p4d"]["n"] >= 1
    (made,) = (tmp_path / "eval" / "attacks").rglob("nudity-p4d-esd.jsonl")
    records = read_prompts(made)
    assert len(records) == 2 and all(r.attack_options["original"] == str(tiny_pipeline_dir) for r in records)


def test_a_partition_of_two_workers_writes_the_one_process_file(unlearned, tmp_path):
    argv = ["--max-prompts", "2", "--p4d-clip", "null", "--batch-size", "1"]
    assert main([*attack(unlearned, tmp_path / "one", *argv)]) == 0
    for index in ("1", "0"):  # worker 0 finishes last and merges
        assert main([*attack(unlearned, tmp_path / "two", *argv, "--num-workers", "2", "--worker-index", index)]) == 0
    (one,), (two,) = (list((tmp_path / d).glob("*.jsonl")) for d in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()


def test_p4d_renders_its_targets_with_the_released_25_steps_unless_told(unlearned, tmp_path):
    from generation.attacks.config import AttackConfig

    common = dict(model=str(unlearned), concept="nudity", out=str(tmp_path / "o"))
    assert AttackConfig(method="p4d", **common).target_steps == 25  # configs/esd_nudity_optmz_config.json
    assert AttackConfig(method="unlearndiffatk", **common).target_steps == 50
    assert AttackConfig(method="p4d", target_steps=7, **common).target_steps == 7
