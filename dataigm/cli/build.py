"""``dataigm build RECIPE``: every step of a recipe (generation, folders, Hub datasets, dedup, balance), then
validate, info and the dataset card; ``--dry-run`` prints the plan. The recipe format: :mod:`dataigm.recipe`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .options import add_options

HELP = "build a whole dataset from a recipe YAML (resumable); --dry-run prints the plan"


@dataclass
class BuildOptions:
    """The options of ``dataigm build``.

    Attributes:
        recipe: recipe YAML file (see recipes/ and the README)
        out: dataset root (default: the recipe's out, relative to the recipe file)
        dry_run: print the steps, what each writes and which are done already; write nothing
    """

    recipe: str
    out: str | None = None
    dry_run: bool = False


class GenerateStep:
    """A ``generate`` source: a generation job with the recipe's root and dataset name (``dataigm generate``)."""

    def config(self, step, recipe):
        from generation.config import JobConfig

        options = {"progress": False, **step.options, "out": str(recipe.out), "name": recipe.name}
        if recipe.concepts_dir and "concepts_dir" not in options:
            options["concepts_dir"] = recipe.concepts_dir
        valid = [f.name for f in dataclasses.fields(JobConfig)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(
                f"{recipe.path.name}: {step.where}: unknown key {unknown[0]!r} for a generate step; valid keys: "
                f"{', '.join(k for k in valid if k != 'out')}"
            )
        try:
            return JobConfig(**options)
        except ValueError as err:
            raise ValueError(f"{recipe.path.name}: {step.where}: {err}") from None

    def check(self, step, recipe) -> None:
        self.config(step, recipe).model_specs()

    def expected(self, step, recipe) -> str:
        from generation.job import collect_prompts, plan_items

        cfg = self.config(step, recipe)
        models = len(cfg.model_specs())
        cells: dict[str, int] = {}
        for group, items in plan_items(cfg, collect_prompts(cfg, cfg.registry())).items():
            for item in items:
                cell = f"{group.split('/', 1)[1]}/{item.label}"
                cells[cell] = cells.get(cell, 0) + models
        return (
            ", ".join(f"{n} {cell}" for cell, n in sorted(cells.items()))
            + f" ({models} model(s); labels by prompt kind)"
        )

    def run(self, step, recipe) -> str:
        from generation.runner import run_job

        summary = run_job(self.config(step, recipe))
        if not summary.complete:
            raise ValueError(summary.text().replace("\n", "; "))
        return summary.text()


class CardStep:
    def check(self, step, recipe) -> None:
        pass

    def expected(self, step, recipe) -> str:
        return "writes README.md, the dataset card"

    def run(self, step, recipe) -> str:
        from cards import write_dataset_card

        return f"wrote {write_dataset_card(recipe.out)}"


def handlers() -> dict:
    """Every step kind's handler: the data layer's, plus generation and the card."""
    from ..recipe import DATA_HANDLERS

    return {**DATA_HANDLERS, "generate": GenerateStep(), "card": CardStep()}


def configure(parser) -> None:
    add_options(parser, BuildOptions, positional=("recipe",))


def run(cfg) -> int:
    from ..recipe import format_plan, load_recipe, plan_recipe, run_recipe

    recipe = load_recipe(cfg.recipe, out=cfg.out)
    if cfg.dry_run:
        print(format_plan(recipe, plan_recipe(recipe, handlers())))
        return 0
    run_recipe(recipe, handlers())
    print(f"built {recipe.out}")
    return 0
