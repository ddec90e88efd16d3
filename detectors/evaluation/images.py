"""The images an evaluation looks at, from our shards or from the paper's benchmark folders.

Every image carries a pairing key: (concept, group, family, sample). The family is the forget prompt
a variant derives from, so M_u(P, s) pairs with M(P̂, s) of the same prompt and seed; pairs are never
made by file order (a defect of the paper's code, where ``glob`` order decided the pairs).

Every image also carries the sha256 of its encoded bytes (``digest``), so a cached result is keyed by
the pixels it was computed from, not by where they were read.

The paper's layout (:func:`from_paper_layout`) holds ``forgot/`` (the forget prompts, P),
``remove_word/`` (P̂-1) and ``unrelated/<method>/<Category>/``. What ``unrelated`` holds depends on the
concept's nature, as in the paper's rule for FID and LPIPS:

* concrete concepts (category ``*/concrete/*``, e.g. Church, Parachute): the target replaced by other
  objects, P̂-2, so these images are read as kind ``replace``, grouped by their ``<Category>`` folder,
  and M_u(P̂-2) is compared with M(P̂-2) of the same category, prompt and sample;
* abstract concepts (Nudity, Van Gogh): prompts unrelated to the concept, read as kind ``retain``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataigm.reader import iter_index, read_at

# Folder names of the paper's benchmark layout and the prompt kind each holds (``unrelated`` holds
# ``replace`` images for concrete concepts, see the module docstring).
PAPER_KINDS = {"forgot": "forget", "remove_word": "remove", "unrelated": "retain"}
_PAPER_FILE = re.compile(r"^(\d+)_(\d+)_(\d+)\.(png|jpg|jpeg|webp)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class EvalImage:
    """One image of one model, with what is needed to judge, score and pair it.

    Attributes:
        model: the model's name (model-spec name, or the method folder of the paper's layout).
        concept, kind: concept id and prompt kind (forget, remove, replace, retain, adversarial, multilingual).
        family: the forget prompt this image's prompt derives from (its own id for retain prompts).
        sample: which sample of the family (the seed for our shards, the file's index for the paper's).
        group: what tells prompts of one family and kind apart: replacement object, retain category, attack.
        key: a stable id (sample key or file path).
        digest: sha256 (hex) of the image's encoded bytes; with the attributes above it keys cached results.
    """

    model: str
    concept: str
    kind: str
    family: str
    sample: int
    key: str
    prompt: str | None = None
    subtheme: str | None = None
    group: str | None = None
    seed: int | None = None
    load: Callable = field(default=None, compare=False, repr=False)
    digest: str | None = None

    @property
    def pair_key(self) -> tuple:
        return (self.concept, self.group, self.family, self.sample)

    def image(self):
        """The image as an RGB ``PIL.Image``."""
        return self.load()


@dataclass(frozen=True)
class FileImage:
    """Loads one image file (picklable, so DataLoader workers can load it)."""

    path: str

    def __call__(self):
        from PIL import Image

        with Image.open(self.path) as img:
            return img.convert("RGB")


@dataclass(frozen=True)
class ShardImage:
    """Loads one image from its shard by byte offset: an evaluation holds these, never the images' bytes."""

    path: str
    offset: int
    size: int

    def __call__(self):
        import io

        from PIL import Image

        with Image.open(io.BytesIO(read_at(self.path, self.offset, self.size))) as img:
            return img.convert("RGB")


def model_of(record: dict, key: str) -> str:
    """The model that generated a sample: the record's ``model`` field (schema 2).

    Records of schema 1 have no such field; their keys start with the model spec's label and ``_``, so
    the part before the first ``_`` is taken (right only for labels without ``_``, which schema 2 lifts).
    """
    return record.get("model") or key.split("_", 1)[0]


def from_shards(root: str | Path, concept: str | None = None, split: str | None = None) -> list[EvalImage]:
    """Generated images of a dataset root, read through the shard index (one entry per image, no bytes kept).

    The model is the record's ``model`` (see :func:`model_of`). Each image's sha256 is computed from its
    bytes here, read once and dropped. A prompt's remove/replace variants share its seeds
    (``generation.seeds``), so an image's family is the forget prompt that has its seed.
    """
    indexed = list(iter_index(root, concept=concept, split=split, source="generated"))
    family_of_seed = {
        (s.record["concept"], s.record["seed"]): s.record["prompt_id"]
        for _, s in indexed
        if s.record["prompt_kind"] == "forget"
    }
    out = []
    for path, sample in indexed:
        r = sample.record
        family = (
            family_of_seed.get((r["concept"], r["seed"]), r["prompt_id"])
            if r["prompt_kind"] != "retain"
            else r["prompt_id"]
        )
        if r["prompt_kind"] in ("adversarial", "multilingual"):
            group = r["attack"] or r["lang"] or r["prompt_id"]
        elif r["prompt_kind"] in ("replace", "retain"):
            group = r["prompt"]
        else:
            group = None
        digest = hashlib.sha256(read_at(path, sample.offset, sample.size)).hexdigest()
        out.append(
            EvalImage(
                model=model_of(r, sample.key), concept=r["concept"], kind=r["prompt_kind"], family=family,
                sample=r["seed"], key=sample.key, prompt=r["prompt"], subtheme=r["subtheme"], group=group,
                seed=r["seed"], load=ShardImage(str(path), sample.offset, sample.size), digest=digest,
            )
        )  # fmt: skip
    return out


def from_paper_layout(
    folder: str | Path, task: str, concept: str, prompts: dict | None = None, category: str | None = None
) -> list[EvalImage]:
    """Images of ``<folder>/<task>/{forgot,remove_word}/<method>/`` and ``unrelated/<method>/<Category>/``.

    Files are ``<class>_<prompt>_<sample>.png``; the family is ``<class>_<prompt>`` so a forgot image
    pairs with the remove_word image of the same class, prompt and sample. ``unrelated`` images are
    ``replace`` images of their ``<Category>`` for concrete concepts and ``retain`` images for abstract
    ones (see the module docstring).

    Args:
        folder: the benchmark folder holding task folders (e.g. ``Benchmarking_images_demo``).
        task: task folder name, e.g. ``Church``.
        concept: our concept id for the task.
        prompts: optional ``{kind: {class_index: [prompt, ...]}}`` to attach prompt texts.
        category: the concept's category path (e.g. ``local/concrete/entity``); default: the built-in
            concept's.

    The folder is other people's data: nothing below it is read through a link (a link to a file or folder
    anywhere in it is refused), and only regular files are read (a pipe named like an image would hang the read).

    Raises:
        ValueError: no such task folder, no images in it, a link inside it, or no category for a concept that is
            not built in.
    """
    if category is None:
        from dataigm.concepts import load_registry

        registry = load_registry()
        if concept not in registry:
            raise ValueError(
                f"Concept {concept!r} is not built in: give its category (e.g. local/concrete/entity) "
                "to read the paper's layout"
            )
        category = registry.get(concept).category
    concrete = category.split("/")[1] == "concrete"
    base = Path(folder) / task
    if not base.is_dir():
        raise ValueError(
            f"No task folder {str(base)!r}; tasks there: {', '.join(sorted(p.name for p in Path(folder).iterdir() if p.is_dir()))}"
        )
    _refuse_link(base, folder)
    out = []
    for layout_name, kind in PAPER_KINDS.items():
        kind_dir = base / layout_name
        _refuse_link(kind_dir, folder)
        if not kind_dir.is_dir():
            continue
        if kind == "retain" and concrete:
            kind = "replace"
        for method_dir in sorted(p for p in kind_dir.iterdir() if _refuse_link(p, folder) and p.is_dir()):
            folders = (
                [(None, method_dir)]
                if layout_name != "unrelated"
                else [(c.name, c) for c in sorted(method_dir.iterdir()) if _refuse_link(c, folder) and c.is_dir()]
            )
            for group, images_dir in folders:
                out += _paper_images(images_dir, method_dir.name, concept, kind, group, prompts)
    if not out:
        raise ValueError(
            f"No images named <class>_<prompt>_<sample>.png under {base}/{{forgot,remove_word,unrelated}}/<method>/"
        )
    return out


def _refuse_link(path: Path, root) -> bool:
    """True; a link raises one line (a paper layout is read without following links)."""
    if path.is_symlink():
        raise ValueError(
            f"{str(path)!r} in the paper layout {str(root)!r} is a link: links are not followed (refused)"
        )
    return True


def _paper_images(
    folder: Path, method: str, concept: str, kind: str, group: str | None, prompts: dict | None
) -> list[EvalImage]:
    out = []
    for path in sorted(folder.iterdir()):
        match = _PAPER_FILE.match(path.name)
        if not match or not (_refuse_link(path, folder) and path.is_file()):
            continue
        cls, prompt, sample = (int(x) for x in match.groups()[:3])
        text = None
        if prompts and kind in prompts:
            texts = list(prompts[kind].values())[cls] if cls < len(prompts[kind]) else []
            text = texts[prompt] if prompt < len(texts) else None
        family = f"{cls}_{prompt}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append(
            EvalImage(
                method, concept, kind, family, sample, str(path), text, None, group, None, FileImage(str(path)), digest
            )
        )
    return out


class LoadedImages(Sequence):
    """The RGB ``PIL.Image`` of each of ``images``, loaded when indexed (by a judge's or a metric's DataLoader
    workers when they have some), never all held at once."""

    def __init__(self, images: Sequence[EvalImage]):
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LoadedImages(self.images[index])
        return self.images[index].image()


def select(images: Iterable[EvalImage], **where) -> list[EvalImage]:
    """The images whose attributes equal every ``where`` value (None values are ignored)."""
    return [im for im in images if all(v is None or getattr(im, k) == v for k, v in where.items())]


def pair(
    left: Iterable[EvalImage], right: Iterable[EvalImage], match_group: bool = True
) -> list[tuple[EvalImage, EvalImage]]:
    """Pairs with the same concept, family and sample (and group); unmatched images are left out."""
    key = (lambda im: im.pair_key) if match_group else (lambda im: (im.concept, im.family, im.sample))
    index = {key(im): im for im in right}
    return [(im, index[key(im)]) for im in left if key(im) in index]
