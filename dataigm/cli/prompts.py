"""``dataigm prompts build`` and ``dataigm prompts import``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..files import check_output
from ..prompt_import import IMPORTERS, import_prompts
from ..prompts import build_prompts, parse_kinds, write_prompts
from ..schema import PROMPT_KINDS
from .common import ConceptsDirOption, command_parser, registry_of, save_config
from .options import add_options

HELP = "build the prompt sets of a concept, or import prompt files of other formats"
logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class BuildOptions(ConceptsDirOption):
    """``dataigm prompts build``.

    Attributes:
        concept: concept id (see `dataigm concepts`)
        kinds: comma-separated: forget, remove, replace, retain
        out: output .jsonl file
    """

    concept: str
    kinds: str = "forget,remove"
    out: str


@dataclass(kw_only=True)
class ImportOptions(ConceptsDirOption):
    """``dataigm prompts import``.

    Attributes:
        files: igmu: forgot.json [retain.json]; csv: one or more CSV files
        format: input format
        out: output folder
        concept: csv: the concept the prompts are about
        column: csv: the column holding the prompt text
        kind: csv: the prompts' kind
        attack: csv: attack name (default: the file name)
    """

    files: list[str]
    format: Literal[tuple(IMPORTERS)]
    out: str
    concept: str | None = None
    column: str = "prompt"
    kind: Literal[PROMPT_KINDS] = "adversarial"
    attack: str | None = None


def configure(parser) -> None:
    sub = parser.add_subcommands(dest="action")
    build = command_parser("write a concept's prompt set as JSONL")
    sub.add_subcommand("build", build, help="write a concept's prompt set as JSONL")
    add_options(build, BuildOptions)
    imp = command_parser("convert prompt files of another format to JSONL, one file per concept")
    sub.add_subcommand("import", imp, help="convert IGMU json or CSV prompt files to JSONL")
    add_options(imp, ImportOptions, positional=("files",))


def run(cfg) -> int:
    action = cfg.action
    args = cfg[action]
    registry = registry_of(args)
    if action == "build":
        concept = registry.get(args.concept)
        kinds = parse_kinds(args.kinds, concept)
        check_output(args.out, "file")
        n = write_prompts(build_prompts(concept, kinds, registry=registry), args.out)
        save_config(args, Path(args.out).with_suffix(".config.yaml"))
        print(f"wrote {n} prompts ({', '.join(kinds)}) for {concept.id} to {args.out}")
        return 0
    options = {"registry": registry}
    if args.format == "csv":
        options.update(concept=args.concept, column=args.column, kind=args.kind, attack=args.attack)
    check_output(args.out, "folder")
    grouped = import_prompts(args.format, args.files, **options)
    out = Path(args.out)
    save_config(args, out / "import-config.yaml")
    for concept_id, records in grouped.items():
        name = concept_id if args.format == "igmu" else f"{concept_id}-{Path(args.files[0]).stem}"
        n = write_prompts(records, out / f"{name}.jsonl")
        kinds = sorted({r.kind for r in records})
        print(f"wrote {n} prompts ({', '.join(kinds)}) to {out / (name + '.jsonl')}")
    return 0
