"""``dataigm ingest``: real, web and already generated images into shards.

Inputs are planned into shards before anything is written (sorted, so the plan depends only on the
inputs), the job reserves its shard numbers in the manifest, and done shards are skipped: a killed
ingest run again finishes the job without duplicates. Unreadable images are skipped, counted and
recorded in their shard's sidecar.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .concepts import Concept, ConceptRegistry, load_registry
from .distribute import make_distributor
from .files import sha256_bytes
from .layout import MANIFEST_NAME, ShardId, check_split
from .manifest import DEFAULT_NAME, check_root, read_manifest
from .prompt_import import IGMU_TASKS
from .prompts import slug
from .sample import PIL_FORMATS, Sample
from .schema import LABELS, SOURCES, make_key
from .shardjob import ShardJob, ShardResult, with_retries
from .writer import write_shard

logger = logging.getLogger(__name__)


class SkippedInput(OSError):
    """An input left out on purpose, never read or never decoded; the message is its countable reason (an image
    with too many pixels, a link leaving the folder, a dataset's file path outside the dataset)."""


TOO_MANY_PIXELS = "too many pixels"
LINK_OUTSIDE = "symbolic link leaving the folder"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# File-name prefixes of the IGMU demo layout <Task>/<split>/<class>/ and the source each stands for.
SOURCE_PREFIXES = {"REAL_": "real", "LAION_": "laion", "SD-GEN_": "generated"}
OUTPUT_FORMATS = ("png", "jpg", "webp")


@dataclass(frozen=True)
class IngestItem:
    """One input image, with everything needed to label it and a way to read its bytes."""

    concept: str
    split: str
    source: str
    label: str
    origin: str
    read: Callable[[], bytes] = field(compare=False, repr=False)
    # position in a stream (a Hub dataset's row): items are written in this order, then by origin
    order: int = field(default=0, compare=False)
    label_source: str = field(default="folder", compare=False)  # who set ``label`` (schema.LABEL_SOURCES)

    @property
    def group(self) -> str:
        return f"{self.concept}/{self.split}/{self.source}"


@dataclass
class IngestReport:
    samples: int = 0
    job_id: str = ""
    shards_written: int = 0
    shards_skipped: int = 0
    skipped_files: list[dict] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.samples} samples in {self.shards_written} new shard(s), {self.shards_skipped} shard(s) already done, "
            f"{len(self.skipped_files)} file(s) skipped, {len(self.ignored_files)} non-image file(s) ignored"
        )


# ---------------------------------------------------------------- labels


def class_map(concept: Concept, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Folder or column value -> ``target``/``pair`` for ``concept`` (case-insensitive keys)."""
    mapping = {
        concept.target_class: "target",
        concept.pair_class: "pair",
        "target": "target",
        "pair": "pair",
        "1": "target",
        "0": "pair",
    }
    for name, label in (extra or {}).items():
        if label not in LABELS:
            raise ValueError(f"--class-map {name}={label}: the label must be one of {', '.join(LABELS)}")
        mapping[name] = label
    return {k.lower(): v for k, v in mapping.items()}


def parse_class_map(text: str | None) -> dict[str, str]:
    """``--class-map``: ``"nsfw=target,sfw=pair"`` -> ``{"nsfw": "target", "sfw": "pair"}``.

    Names without ``=LABEL`` take the label of the next entry that has one, so classes can share a label:
    ``"497=target,281,404=pair"`` -> ``{"497": "target", "281": "pair", "404": "pair"}``. Names are folder names,
    ClassLabel names or integer labels.

    Raises:
        ValueError: an empty name, or names left without a label at the end.
    """
    if not text:
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for part in text.split(","):
        name, sep, label = part.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"--class-map {text!r}: empty class name in {part!r}; write NAME=target or NAME=pair")
        pending.append(name)
        if sep:
            out.update(dict.fromkeys(pending, label.strip()))
            pending = []
    if pending:
        raise ValueError(
            f"--class-map entry {', '.join(pending)!r} has no label; write NAME=target or NAME=pair "
            "(NAME1,NAME2=pair for several)"
        )
    return out


def _label_of(value: str, concept: Concept, mapping: dict[str, str], where: str) -> str:
    try:
        return mapping[str(value).lower()]
    except KeyError:
        valid = sorted(mapping)
        raise ValueError(
            f"{where}: class {value!r} is not a class of concept {concept.id!r}; valid: {', '.join(valid)} "
            "(or map it with --class-map NAME=target|pair)"
        ) from None


# Prefixes of the IGMU task folders (Object_Church, Style_VanGogh, Nudity): the task kind, then the concept.
TASK_PREFIXES = ("object_", "style_", "nudity_")


def resolve_task(name: str, registry: ConceptRegistry) -> Concept:
    """The concept a task folder stands for, ignoring case, separators and an ``Object_``/``Style_``/``Nudity_``
    prefix: ``Object_Church`` -> church, ``Style_VanGogh`` -> van_gogh, ``Nudity`` -> nudity."""
    base = slug(name)
    candidates = [base] + [base[len(p) :] for p in TASK_PREFIXES if base.startswith(p) and len(base) > len(p)]
    if base in IGMU_TASKS:
        return registry.get(IGMU_TASKS[base])
    for candidate in candidates:
        squash = candidate.replace("_", "")
        for concept in registry:
            if squash in (concept.id.replace("_", ""), slug(concept.name).replace("_", "")):
                return concept
    raise ValueError(
        f"Task folder {name!r} matches no concept; known concepts: {', '.join(registry.ids())} (folder names are "
        f"matched ignoring case and a {'/'.join(p.capitalize() for p in TASK_PREFIXES)} prefix; or pass --concept)"
    )


# ---------------------------------------------------------------- planning a folder


def _reader(path: Path, folder: Path) -> Callable[[], bytes]:
    return functools.partial(_read_inside, path, folder.resolve())


def _read_inside(path: Path, folder: Path) -> bytes:
    """The bytes of ``path`` if it lies inside ``folder`` once links are resolved (checked when read, so a link
    changed after planning is caught too).

    Raises:
        SkippedInput: a symbolic link that leaves the folder (it is not followed).
    """
    if not path.resolve().is_relative_to(folder):
        raise SkippedInput(LINK_OUTSIDE)
    return path.read_bytes()


def plan_folder(
    folder: str | Path,
    concept: str | None = None,
    split: str | None = None,
    source: str | None = None,
    label: str | None = None,
    class_names: dict[str, str] | None = None,
    registry: ConceptRegistry | None = None,
) -> tuple[list[IngestItem], list[str]]:
    """Label every image under ``folder``; returns the items and the non-image files ignored.

    Layouts, tried in this order:

    * one ``label`` for the whole folder (an explicit label wins over the IGMU prefixes below, which then only
      give each file's source unless ``source`` is given);
    * the IGMU demo layout ``[<Task>/]<split>/<class>/<PREFIX>_name.ext`` with ``REAL_``, ``LAION_`` or
      ``SD-GEN_`` prefixes (source from the prefix, split and class from the folders);
    * class sub-folders ``<class>/...`` named by the concept's class names.

    Symbolic links: a link to a file inside ``folder`` is read like that file; a link that leaves ``folder`` is
    never followed: it is skipped and counted as "symbolic link leaving the folder" (in the shard's sidecar, like
    an unreadable file). Linked directories are never descended into.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Input folder {str(folder)!r} does not exist")
    registry = registry or load_registry()
    if source is not None and source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    if split is not None:
        check_split(split, "--split")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    ignored = [p.relative_to(folder).as_posix() for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not images:
        raise ValueError(
            f"Input folder {str(folder)!r} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)}; "
            f"{len(ignored)} other file(s))"
        )
    fixed_concept = registry.get(concept) if concept else None
    if label is None and any(p.name.startswith(tuple(SOURCE_PREFIXES)) for p in images):
        items = _plan_igmu_layout(folder, images, fixed_concept, source, class_names, registry)
        return items, ignored
    _refuse_benchmarking_layout(folder, images)
    if fixed_concept is None:
        raise ValueError("--concept is required unless the folder uses the IGMU layout <Task>/<split>/<class>/")
    mapping = class_map(fixed_concept, class_names)
    items = []
    for path in images:
        rel = path.relative_to(folder)
        prefix = next((p for p in SOURCE_PREFIXES if path.name.startswith(p)), None)
        item_source = source or (SOURCE_PREFIXES[prefix] if prefix else "real")
        if label is not None:
            item_label = _label_of(label, fixed_concept, mapping, "--label")
        elif len(rel.parts) < 2:
            raise ValueError(
                f"{rel} is not inside a class sub-folder; use sub-folders named "
                f"{fixed_concept.target_class!r}/{fixed_concept.pair_class!r} or pass --label"
            )
        else:
            item_label = _label_of(rel.parts[0], fixed_concept, mapping, f"folder {rel.parts[0]!r}")
        items.append(
            IngestItem(
                fixed_concept.id, split or "train", item_source, item_label, rel.as_posix(), _reader(path, folder)
            )
        )
    return items, ignored


# Folders of the IGMU benchmarking layout <Task>/{forgot,remove_word,unrelated}/<Method>/...: images to evaluate.
_BENCHMARK_FOLDERS = {"forgot", "remove_word", "unrelated"}


def _refuse_benchmarking_layout(folder: Path, images: list[Path]) -> None:
    for path in images:
        dirs = path.relative_to(folder).parts[:-1]
        if len(dirs) >= 3 and dirs[1].lower() in _BENCHMARK_FOLDERS:
            raise ValueError(
                f"{str(folder)!r} is in the IGMU benchmarking layout <Task>/forgot|remove_word|unrelated/<Method>/ "
                f"(e.g. {path.relative_to(folder).as_posix()}): images of models to evaluate, not labelled images "
                f"to ingest. Evaluate them with `dataigm evaluate --paper-layout {folder}`"
            )


def _plan_igmu_layout(folder, images, fixed_concept, source, class_names, registry) -> list[IngestItem]:
    items = []
    for path in images:
        rel = path.relative_to(folder)
        dirs = rel.parts[:-1]
        if len(dirs) == 3:
            concept = fixed_concept or resolve_task(dirs[0], registry)
        elif len(dirs) == 2 and fixed_concept is not None:
            concept = fixed_concept
        else:
            raise ValueError(
                f"{rel}: expected <Task>/<split>/<class>/<file> (or <split>/<class>/<file> with --concept)"
            )
        prefix = next((p for p in SOURCE_PREFIXES if path.name.startswith(p)), None)
        item_source = SOURCE_PREFIXES[prefix] if prefix else source
        if item_source is None:
            raise ValueError(f"{rel}: no source prefix ({', '.join(SOURCE_PREFIXES)}); pass --source for such files")
        label = _label_of(dirs[-1], concept, class_map(concept, class_names), f"{rel}")
        split = check_split(slug(dirs[-2]), f"{rel}: split folder {dirs[-2]!r} gives split")
        items.append(IngestItem(concept.id, split, item_source, label, rel.as_posix(), _reader(path, folder)))
    return items


# ---------------------------------------------------------------- planning a Hugging Face dataset


def plan_hf_dataset(name: str, concept: str, **options) -> list[IngestItem]:
    """Label the rows of a Hugging Face dataset (Hub name or local folder), streamed; image bytes are kept as
    stored. The items of :func:`dataigm.sources.hub.plan_hf_stream` (see there for the options)."""
    from .sources.hub import plan_hf_stream

    return plan_hf_stream(name, concept, **options).items


# ---------------------------------------------------------------- writing


def default_max_pixels() -> int:
    """Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), our default ``max_pixels``."""
    from PIL import Image

    return _PILLOW_MAX_PIXELS or Image.MAX_IMAGE_PIXELS


_PILLOW_MAX_PIXELS: int | None = None  # Pillow's own value, read once before any change


@contextlib.contextmanager
def open_image(data: bytes, max_pixels: int | None = None):
    """``PIL.Image.open`` on ``data`` that refuses more than ``max_pixels`` pixels (default Pillow's limit) from
    the header alone, before anything is decoded.

    Pillow warns above its ``MAX_IMAGE_PIXELS`` and raises above twice that; here the limit is ours: the image is
    refused with :class:`SkippedInput` ("too many pixels") above it, whatever Pillow's setting.

    Raises:
        SkippedInput: too many pixels.
    """
    from PIL import Image

    global _PILLOW_MAX_PIXELS
    if _PILLOW_MAX_PIXELS is None:
        _PILLOW_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
    limit = max_pixels or default_max_pixels()
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # Pillow's own check then raises only far above ours, which comes first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, not warned about
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise SkippedInput(TOO_MANY_PIXELS) from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    with img:
        if img.width * img.height > limit:
            raise SkippedInput(TOO_MANY_PIXELS)
        yield img


def encode_image(
    data: bytes, resize: int | None, image_format: str | None, max_pixels: int | None = None
) -> tuple[bytes, str, int, int]:
    """Check that ``data`` decodes (and has at most ``max_pixels`` pixels, default Pillow's limit); re-encode only
    when asked (or for formats shards do not keep)."""
    from PIL import Image

    with open_image(data, max_pixels) as img:
        img.load()  # decodes the whole image: truncated files fail here, not in a training run
        ext = PIL_FORMATS.get(img.format)
        target_ext = image_format or ext or "png"
        if resize is None and target_ext == ext:
            return data, ext, img.height, img.width
        out = img.convert("RGBA" if target_ext != "jpg" and "A" in img.getbands() else "RGB")
        if resize is not None:
            scale = resize / min(out.size)
            out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))), Image.LANCZOS)
        buffer = io.BytesIO()
        pil_format = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[target_ext]
        out.save(buffer, format=pil_format, **({"quality": 95} if target_ext != "png" else {}))
        return buffer.getvalue(), target_ext, out.height, out.width


def _job_id(items: Sequence[IngestItem], options: dict) -> str:
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for item in items:
        digest.update(f"{item.group}|{item.label}|{item.origin}\n".encode())
    return "ingest-" + digest.hexdigest()[:16]


def _choose_job_id(root: str | Path, items: Sequence[IngestItem], options: dict, samples_per_shard: int) -> str:
    """The job's id names the work (inputs, labels, encoding), not its cut into shards.

    Earlier versions hashed ``samples_per_shard`` into the id; a job found in the root under such an id keeps
    it, so running its command again finishes it instead of writing every sample a second time.
    """
    job_id = _job_id(items, options)
    legacy = _job_id(items, {"spp": samples_per_shard, **options})
    path = Path(root) / MANIFEST_NAME
    if path.exists() and legacy in read_manifest(root)["jobs"] and job_id not in read_manifest(root)["jobs"]:
        return legacy
    return job_id


def unreadable_reason(err: BaseException) -> str:
    """A short, stable reason for an image that cannot be read (no object reprs, no memory addresses)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(err, SkippedInput):
        return str(err)
    if isinstance(err, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(err, Image.DecompressionBombError):
        return TOO_MANY_PIXELS
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, PermissionError):
        return "permission denied"
    text = str(err)
    if "truncated" in text.lower():
        return "truncated image data"
    text = re.sub(r"<[^<>]*? at 0x[0-9a-fA-F]+>", "<object>", text)  # reprs of readers carry memory addresses
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def check_max_pixels(max_pixels: int | None) -> None:
    """Raise a ``ValueError`` for a ``--max-pixels`` below 1."""
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"--max-pixels must be at least 1, got {max_pixels}")


# PIL raises these for unreadable images (OSError also covers files that cannot be read)
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError)


def _check_something_readable(items: Sequence[IngestItem], where: str | None, max_pixels: int | None) -> None:
    """Refuse, before anything is written, inputs of which not one image can be read."""
    reasons: Counter = Counter()
    for item in items:
        try:
            with open_image(item.read(), max_pixels) as img:
                img.load()
            return
        except UNREADABLE_ERRORS as err:
            reasons[unreadable_reason(err)] += 1
    counted = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    raise ValueError(
        f"none of the {len(items)} images{f' in {where}' if where else ''} can be read ({counted}); nothing was written"
    )


@dataclass(frozen=True)
class IngestTask:
    """One shard of an ingest plan: the images that go into ``shard``."""

    shard: ShardId
    items: tuple[IngestItem, ...]


@dataclass
class IngestWorker:
    """Reads, checks and (if asked) re-encodes one task's images and writes its shard (a ``ShardWorker``).

    Unreadable images are skipped and recorded in the shard's sidecar; only transient errors of the write
    are retried.
    """

    root: str
    job: str
    categories: dict[str, str]  # concept id -> category path
    resize: int | None = None
    image_format: str | None = None
    license: str | None = None
    retries: int = 2
    max_pixels: int | None = None

    def run(self, task: IngestTask) -> ShardResult:
        """Write ``task``'s shard; a failure is returned, not raised."""

        def attempt() -> ShardResult:
            samples, skipped = _build_samples(
                task.items, self.categories, self.resize, self.image_format, self.license, self.max_pixels
            )
            write_shard(self.root, task.shard, samples, job_id=self.job, errors=skipped)
            return ShardResult(task.shard.relpath, images=len(samples), skipped=skipped)

        return with_retries(task.shard, attempt, self.retries)


def ingest(
    items: Sequence[IngestItem],
    root: str | Path,
    samples_per_shard: int = 1000,
    resize: int | None = None,
    image_format: str | None = None,
    license: str | None = None,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
    where: str | None = None,
    config: dict | None = None,
    max_pixels: int | None = None,
) -> IngestReport:
    """Write ``items`` into shards of ``root``, skipping shards an earlier run of the same job finished.

    Every input and the root are checked before anything is written, so a refused run leaves no root, no
    reservation and no card behind. The bookkeeping is :class:`dataigm.shardjob.ShardJob`'s; the shards are
    written by :class:`IngestWorker`.

    Args:
        items: the planned images (:func:`plan_folder`, :func:`plan_hf_dataset`).
        root: the dataset root, created when missing.
        samples_per_shard: images per shard. The job's id does not depend on it, and a second run of the same
            job with another value is refused (it would write every sample twice).
        resize: re-encode with the shorter side at this size.
        image_format: re-encode every image to this format.
        license: license recorded in every sample.
        name: dataset name recorded in the manifest.
        registry: the concept registry.
        progress: show a progress bar.
        where: what the items come from (a folder, a dataset), named in messages.
        config: the job's resolved options (the source and how its rows were chosen), recorded in the manifest
            and in ``meta/<job>.yaml`` with the writing options (``resize``, ``format``, ``license``) added; the
            dataset card lists them.
        max_pixels: images with more pixels are skipped as "too many pixels" before they are decoded (default:
            Pillow's decompression-bomb limit, :func:`default_max_pixels`).

    Raises:
        ValueError: a bad option, no items, a bad split or source, a root that cannot take them, a second plan of
            the same job, inputs of which no image can be read, or shards that failed to be written.
    """
    if samples_per_shard < 1:
        raise ValueError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    if image_format is not None and image_format not in OUTPUT_FORMATS:
        raise ValueError(f"Unknown image format {image_format!r}; valid: {', '.join(OUTPUT_FORMATS)}")
    if resize is not None and resize < 1:
        raise ValueError(f"--resize must be a positive size in pixels, got {resize}")
    check_max_pixels(max_pixels)
    if not items:
        raise ValueError(f"No images to ingest{f' in {where}' if where else ''}")
    registry = registry or load_registry()
    concepts = [registry.get(cid) for cid in sorted({i.concept for i in items})]
    groups: dict[str, list[IngestItem]] = {}
    for item in sorted(items, key=lambda i: (i.group, i.order, i.origin)):
        groups.setdefault(item.group, []).append(item)
    tasks = []
    for group, group_items in groups.items():
        for k in range(math.ceil(len(group_items) / samples_per_shard)):
            chunk = tuple(group_items[k * samples_per_shard : (k + 1) * samples_per_shard])
            tasks.append(IngestTask(ShardId(*group.split("/"), k), chunk))  # split and source names checked here
    options = {"resize": resize, "format": image_format, "license": license}
    options |= {"max_pixels": max_pixels} if max_pixels is not None else {}  # the default keeps earlier job ids
    check_root(root, name, concepts)
    job_id = _choose_job_id(root, items, options, samples_per_shard)
    worker = IngestWorker(
        str(root), job_id, {c.id: c.category for c in concepts}, resize, image_format, license, max_pixels=max_pixels
    )
    job = ShardJob(
        root=root,
        job_id=job_id,
        tasks=tasks,
        worker=worker,
        concepts=concepts,
        plan={"samples_per_shard": samples_per_shard},
        description=f"ingest of {len(items)} images",
        config=None if config is None else {**config, **options},  # what was written, with where it came from
        name=name,
    )
    job.check()
    _check_something_readable([i for g in groups.values() for i in g], where, max_pixels)
    summary = job.run(make_distributor("local", 1, 0), progress=progress, unit="img")
    if summary.failed:
        failures = "; ".join(f"{r.shard}: {r.error}" for r in summary.failed[:3])
        raise ValueError(
            f"{len(summary.failed)} shard(s) could not be written ({failures}); run the same command again to retry"
        )
    return IngestReport(
        samples=summary.images,
        job_id=job_id,
        shards_written=summary.written,
        shards_skipped=summary.skipped,
        skipped_files=summary.skipped_inputs,
    )


def _build_samples(
    chunk, categories, resize, image_format, license, max_pixels=None
) -> tuple[list[Sample], list[dict]]:
    """The samples of one shard, and the inputs skipped as ``{"file": origin, "reason": ...}``."""
    samples, skipped = [], []
    for item in chunk:
        try:
            original = item.read()
            data, ext, height, width = encode_image(original, resize, image_format, max_pixels)
        except UNREADABLE_ERRORS as err:
            reason = unreadable_reason(err)
            logger.warning("skipping unreadable image %s: %s", item.origin, reason)
            skipped.append({"file": item.origin, "reason": reason})
            continue
        content = sha256_bytes(original)
        key = make_key(
            item.source,
            slug(Path(item.origin).stem)[:40],
            hashlib.sha1(f"{item.origin}:{content}".encode()).hexdigest()[:10],
        )
        record = {
            "concept": item.concept,
            "label": item.label,
            "category": categories[item.concept],
            "source": item.source,
            "split": item.split,
            "height": height,
            "width": width,
            "origin": item.origin,
            "license": license,
            "label_source": item.label_source,
        }
        samples.append(Sample(key, data, ext, LABELS.index(item.label), record))
    return samples, skipped


def folder_config(folder: str | os.PathLike, items: Sequence[IngestItem], ignored: list[str], **options) -> dict:
    """What a folder ingest records in the manifest and the card (:func:`ingest` adds the writing options): the
    folder by its name (a card carries no local paths), the labelling options given, and the planned images per
    ``concept/split/source`` and class."""
    planned: dict[str, dict[str, int]] = {}
    for item in items:
        by_label = planned.setdefault(item.group, {})
        by_label[item.label] = by_label.get(item.label, 0) + 1
    keys = ("concept", "split", "source", "label", "class_names")
    given = {k: options[k] for k in keys if options.get(k) not in (None, {})}
    return {
        "ingest": "folder",
        "folder": Path(folder).name,
        **given,
        "planned": planned,
        "ignored_files": len(ignored),
    }


def ingest_folder(folder: str | os.PathLike, root: str | os.PathLike, **options) -> IngestReport:
    """Plan ``folder`` with :func:`plan_folder` and write it with :func:`ingest`; the job's configuration (the
    folder's name, the options, the planned images per concept, split, source and class) goes to the manifest
    and the dataset card."""
    plan_keys = ("concept", "split", "source", "label", "class_names", "registry")
    items, ignored = plan_folder(folder, **{k: v for k, v in options.items() if k in plan_keys})
    write_options = {k: v for k, v in options.items() if k not in plan_keys or k == "registry"}
    config = folder_config(folder, items, ignored, **options)
    report = ingest(items, root, **{"where": str(folder), "config": config, **write_options})
    report.ignored_files = ignored
    return report
