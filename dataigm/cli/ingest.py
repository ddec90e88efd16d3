"""``dataigm ingest``: a folder of images, a URL list, or a Hugging Face dataset, into shards of a dataset root."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..manifest import DEFAULT_NAME
from ..sources.config import SOURCE_CONFIGS, FolderSource, SourceConfig, UrlListSource
from .card import refresh_card
from .common import ConceptsDirOption, registry_of, save_config
from .options import add_options, options_of

HELP = "add real, web or generated images (a folder, a URL list or a Hugging Face dataset) to a dataset root"

# How the command line names each source's input.
INPUT_FLAGS = {"folder": "FOLDER", "urls": "--urls", "hf_dataset": "--hf-dataset"}
# A flag gives these as text; a recipe may give a mapping or a list.
_CLI_TYPES = {"class_map": str | None, "pair_words": str | None}


@dataclass(kw_only=True)
class IngestOptions(ConceptsDirOption):
    """The options of ``dataigm ingest`` besides its sources' (:mod:`dataigm.sources.config`).

    Attributes:
        out: dataset root to write to (created when missing)
        name: dataset name recorded in the manifest
        progress: show a progress bar
    """

    out: str
    name: str = DEFAULT_NAME
    progress: bool = True


def configure(parser) -> None:
    """The command's own options, then each source's fields once (a field two sources share is one flag)."""
    add_options(parser, IngestOptions)
    added = {f.name for f in dataclasses.fields(IngestOptions)}
    for cls in SOURCE_CONFIGS.values():
        add_options(parser, cls, skip=tuple(added), positional=("folder",), types=_CLI_TYPES)
        added |= set(cls.keys())


def _flag(name: str) -> str:
    return INPUT_FLAGS.get(name, f"--{name.replace('_', '-')}")


def _default(cls: type[SourceConfig], name: str):
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default


def source_of(cfg) -> SourceConfig:
    """The source the command line names, built from its flags; a flag its source does not take is refused.

    Raises:
        ValueError: no input or several, or a flag of another source (one line naming it).
    """
    given = [kind for kind in SOURCE_CONFIGS if cfg.get(kind)]
    if len(given) != 1:
        named = " and ".join(INPUT_FLAGS[k] for k in given)
        raise ValueError(
            "give exactly one input: a FOLDER, --urls FILE or --hf-dataset NAME_OR_PATH"
            + (f" (got {named})" if given else "")
        )
    cls = SOURCE_CONFIGS[given[0]]
    flag = INPUT_FLAGS[cls.KIND]
    stray = []  # options of the other sources given a value: the chosen one does not take them
    for other in SOURCE_CONFIGS.values():
        for name in set(other.keys()) - set(cls.keys()):
            if name not in stray and cfg.get(name) != _default(other, name):
                stray.append(name)
    if cls is UrlListSource:
        if cfg.get("source") not in (None, "laion"):
            raise ValueError(f"--urls images have source laion; got --source {cfg.source}")
        stray = [n for n in stray if n != "source"]  # --source laion says what URL-list images are: taken as said
        for name in ("label", "class_map"):
            if name in stray:
                raise ValueError(f"{_flag(name)} does not apply to --urls: captions set the labels")
    if stray:
        flags = sorted(_flag(n) for n in stray)
        raise ValueError(f"{', '.join(flags)} {'does' if len(flags) == 1 else 'do'} not apply to {flag}")
    if cls is not FolderSource and cfg.concept is None:
        raise ValueError(f"--concept is required with {flag}")
    source = cls(**options_of(cls, cfg))
    source.check()
    return source


def _run_urls(cfg, source, registry) -> None:
    from ..sources.web import ingest_url_source

    report = ingest_url_source(source, cfg.out, name=cfg.name, registry=registry, progress=cfg.progress)
    _finish(cfg)
    print(report.summary())


def _run_hf_dataset(cfg, source, registry) -> None:
    from ..sources.hub import ingest_hub_source

    report, counts = ingest_hub_source(source, cfg.out, name=cfg.name, registry=registry, progress=cfg.progress)
    _finish(cfg)
    selected = ", ".join(f"{n} {label}" for label, n in counts["rows_selected"].items()) or "none"
    print(f"{counts['rows_seen']} rows read, {counts['rows_after_where']} after --where, selected: {selected}")
    _print_report(report)
    print(f"counts in {counts['counts_file']}")


def _print_report(report, ignored: tuple[str, ...] | list[str] = ()) -> None:
    print(report.summary())
    for skipped in report.skipped_files:
        print(f"  skipped {skipped['file']}: {skipped['reason']}")
    for name in ignored:
        print(f"  ignored {name} (not an image file)")


def _finish(cfg) -> None:
    save_config(cfg, Path(cfg.out) / "meta" / "ingest-config.yaml", append=True)
    refresh_card(cfg.out)


def run(cfg) -> int:
    registry = registry_of(cfg)
    source = source_of(cfg)
    if source.KIND == "urls":
        _run_urls(cfg, source, registry)
    elif source.KIND == "hf_dataset":
        _run_hf_dataset(cfg, source, registry)
    else:
        from ..sources.folder import ingest_folder_source

        report = ingest_folder_source(
            source, cfg.out, name=cfg.name, registry=registry, progress=cfg.progress, where=repr(cfg.folder)
        )
        _finish(cfg)
        _print_report(report, report.ignored_files)
    return 0
