"""The card of a set of adversarial prompt files (``dataigm attack``): what attacked what, how, and from where.

Users of the field ask for attack sets whose origin is known. Each file's records carry their provenance
(``dataigm.prompts.PromptRecord``: the attack, the attacked prompt, the target model's spec and checksum, the
options, the seed, the loss or fitness reached); the card lists it per file so the set can be trusted, reproduced
and used as it is (``dataigm generate --prompt-files``, ``dataigm evaluate --attack-files``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from statistics import mean

import yaml

from dataigm.concepts import load_registry
from dataigm.markdown import escape, number, table
from dataigm.prompts import PromptRecord, read_prompts

ATTACK_TAGS = ["dataigm", "machine-unlearning", "adversarial-prompts", "text-to-image"]
PAPERS = {
    "unlearndiffatk": "Zhang et al., To Generate or Not? Safety-Driven Unlearned Diffusion Models Are Still Easy To "
    "Generate Unsafe Images ... For Now, ECCV 2024 (arXiv:2310.11868)",
    "ring_a_bell": "Tsai et al., Ring-A-Bell! How Reliable are Concept Removal Methods for Diffusion Models?, ICLR 2024",
}


def read_attack_file(path: str | os.PathLike) -> list[PromptRecord]:
    """The records of an attack prompt file, each with its provenance.

    Raises:
        ValueError: the file is missing, empty, or holds a record that is not an attack's (no provenance).
    """
    if not Path(path).is_file():
        raise ValueError(f"Attack prompt file {str(path)!r} does not exist")
    records = read_prompts(path)
    if not records:
        raise ValueError(f"{path}: holds no prompts")
    for r in records:
        if r.kind != "adversarial" or not r.attack or r.target_checksum is None or r.attack_options is None:
            raise ValueError(
                f"{path}: prompt {r.prompt_id!r} has no attack provenance (kind adversarial with attack, "
                "target_checksum and attack_options); publish files written by `dataigm attack`"
            )
    return records


def _share(records: list[PromptRecord], count) -> str:
    """``k / n`` over the records that hold the outcome (``count`` gives True/False, None: not recorded)."""
    values = [v for v in (count(r.extra or {}) for r in records) if v is not None]
    return f"{sum(values)} / {len(values)}" if values else "-"


def _before(extra: dict):
    return extra.get("flagged_before")


def _after(extra: dict):
    before = extra.get("flagged_before")
    return None if before is None else bool(before) or extra.get("flagged_at") is not None


def _summary_row(name: str, records: list[PromptRecord]) -> list:
    first = records[0]
    losses = [r.loss for r in records if r.loss is not None]
    fitness = [r.fitness for r in records if r.fitness is not None]
    reached = f"loss {number(mean(losses))}" if losses else f"fitness {number(mean(fitness))}" if fitness else "-"
    rendered = [r.extra["loss_rendered"] for r in records if (r.extra or {}).get("loss_rendered") is not None]
    if rendered:  # the loss of the tokens the written prompts give (what a pipeline renders)
        reached += f" (rendered {number(mean(rendered))})"
    model = first.target_model or {}
    return [
        f"`{name}`",
        first.attack,
        first.concept,
        escape(model.get("label") or model.get("base")),
        escape(model.get("method", "-")),
        f"`{first.target_checksum[:16]}`",
        len(records),
        reached,
        _share(records, lambda extra: extra.get("retokenizes")),
        _share(records, _before),
        _share(records, _after),
    ]


def attack_card(files: Sequence[str | os.PathLike], license: str = "other") -> str:
    """The card (``README.md`` text) of the attack prompt files ``files`` as published under ``data/``."""
    by_file = {Path(f).name: read_attack_file(f) for f in files}
    records = [r for rs in by_file.values() for r in rs]
    attacks = sorted({r.attack for r in records})
    concepts = sorted({r.concept for r in records})
    registry = load_registry()
    warned = [c for c in concepts if c in registry and registry.get(c).content_warning]
    front = {
        "license": license,
        "tags": [*ATTACK_TAGS, *attacks],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.jsonl"}]}],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# Adversarial prompts: {', '.join(concepts)} ({', '.join(attacks)})",
        "",
        f"{len(records)} adversarial prompts made by `dataigm attack` against {len({r.target_checksum for r in records})} "
        "model(s). Every line of the JSONL files is one prompt with its provenance: the attack (`attack`, "
        "`attack_options`), the attacked prompt (`parent_id`, `source_text`), the attacked model (`target_model`, its "
        "spec; `target_checksum`, a sha256 of its spec and weights files), the `seed` the attack used (the seed of "
        "the image to render) and what it reached (`loss`: UnlearnDiffAtk's denoising loss, lower is stronger; "
        "`fitness`: Ring-A-Bell's distance to the prompt plus the concept vector, lower is closer).",
        "",
        "UnlearnDiffAtk records also say whether the written prompt tokenizes back to the optimised tokens "
        "(`extra.retokenizes`; when not, `extra.loss_rendered`, the loss of the tokens the text renders to, is the "
        "one that applies to its images). Made with a judge (`attack_options.judge`), they hold the released "
        "checkpoints' outcome per prompt: `extra.flagged_before` (the prompt's image before the attack) and "
        "`extra.flagged_at` (optimisation steps done at the first flagged checkpoint image, or null). The paper's "
        "pre-attack ASR is the share of prompts flagged before; its post-attack ASR the share flagged before or at "
        "any checkpoint (the Files table gives both as counts of prompts).",
        "",
    ]
    if warned:
        lines += [
            f"**Content warning**: these prompts aim to make models show {', '.join(warned)}.",
            "",
        ]
    lines += [
        "## Files",
        "",
        table(
            [
                "file",
                "attack",
                "concept",
                "target model",
                "method",
                "checksum",
                "prompts",
                "mean reached",
                "re-tokenise",
                "flagged before (pre-ASR)",
                "flagged before or at a checkpoint (post-ASR)",
            ],  # fmt: skip
            [_summary_row(name, rs) for name, rs in by_file.items()],
        ),
        "",
        "## Attack options",
        "",
    ]
    for name, rs in by_file.items():
        model = {k: v for k, v in (rs[0].target_model or {}).items() if v not in (None, 0.0, 1.0) or k == "base"}
        lines += [
            f"`{name}`: attack options and target model",
            "",
            "```yaml",
            yaml.safe_dump({"attack_options": rs[0].attack_options, "target_model": model}, sort_keys=False).strip(),
            "```",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```bash",
        "dataigm generate --prompt-files data/FILE.jsonl --models MODEL --out ROOT",
        "dataigm evaluate --attack-files data/FILE.jsonl ...",
        "```",
        "",
        "`datasets.load_dataset` reads the files as JSON lines. A prompt's images are meaningful for the model it "
        "was made against (its `target_checksum`); other models measure how the attack transfers.",
        "",
        "## References",
        "",
        *[f"* {attack}: {PAPERS[attack]}" for attack in attacks if attack in PAPERS],
        "",
    ]
    return "\n".join(lines)
