"""FID and CLIP score of a benchmark run, on the suite's reference prompt set (COCO-10k for UnlearnDiffAtk).

:func:`prepare_quality` checks, before anything is written, what these numbers need: the reference prompt file
(checked against the suite's pin), and for FID a folder of reference images (:func:`read_reference_folder`: that
folder only, no links, image files only). Each model renders the reference prompts, each with its seed, through the
same evaluation generation as the forget prompts (cached by content). :func:`quality_numbers` then computes, per
model:

* ``fid``: Fréchet distance between the features of the model's images and of the reference images, with the
  jackknife interval of :func:`detectors.evaluation.quality.fid_from_features`. FID is a set metric: no per-prompt
  outcome, so a board shows its interval and ranks no pairs of it.
* ``clip_score``: torchmetrics' CLIP score, ``100 * max(cos(image, text), 0)`` per image
  (:class:`detectors.evaluation.quality.ClipScorer`), averaged over prompts, with a bootstrap interval over prompts;
  the per-prompt values are kept (``per_prompt``) so two models can be paired on the same prompts.

Each number records its backbone's identity (the sha256 of the loaded weights) and, for FID, the reference folder's
content digest. A number whose inputs were not given is skipped with that reason, never filled in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

# image files a reference folder may hold (anything else in it is refused)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# the guidance of a reference prompt of a per-prompt-guidance suite: the csv has none; AdvUnlearn's
# train-scripts/generate-example-img.py (github.com/OPTML-Group/AdvUnlearn @ 9d231249) renders COCO-10k at 7.5
REFERENCE_GUIDANCE = 7.5
FID_RULE = (
    "FID between the model's images of the reference prompts (one per prompt, its seed) and the reference images, "
    "features of {backbone}, Fréchet distance with covariances over n - 1"
)
CLIP_RULE = (
    "mean over the reference prompts of 100 x max(cos(image, prompt), 0) with {model} (torchmetrics' clip_score), "
    "one image per prompt"
)
BETTER = {"fid": "lower", "clip_score": "higher"}
# the suite's FID backbone names and what loads them (detectors.evaluation.quality.fid_metric's feature)
INCEPTION = "inception"


def read_reference_folder(folder: str | Path, what: str) -> dict:
    """The image files of a reference folder and its content digest, read safely.

    Only the folder itself is read (not its subfolders); every entry but hidden files must be a regular image file
    (:data:`IMAGE_SUFFIXES`): a link (even to a file inside), a folder or another file is refused, so nothing
    outside the named folder is ever read.

    Returns:
        ``{"path", "files": [sorted paths], "sha256"}``: the digest is the sha256 of each file's name and sha256,
        in name order (renaming or changing any image changes it).

    Raises:
        ValueError: one line: not a folder, a link, a non-image entry, no image.
    """
    root = Path(folder)
    if root.is_symlink() or not root.is_dir():
        raise ValueError(f"{what} {str(folder)!r} is not a folder (a link to one is refused too)")
    files, digest = [], hashlib.sha256()
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            raise ValueError(f"{what} {str(folder)!r}: {entry.name!r} is a link; only image files are read: refused")
        if not entry.is_file() or entry.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"{what} {str(folder)!r}: {entry.name!r} is not an image file ({', '.join(IMAGE_SUFFIXES)}): refused"
            )
        content = hashlib.sha256(entry.read_bytes()).hexdigest()
        digest.update(f"{entry.name}\0{content}\n".encode())
        files.append(entry)
    if len(files) < 2:
        raise ValueError(f"{what} {str(folder)!r} holds {len(files)} image(s); FID needs at least 2")
    return {"path": str(root.resolve()), "files": [str(f) for f in files], "sha256": digest.hexdigest()}


def prepare_quality(
    suite,
    concept: str,
    prompt_files: Mapping[str, str],
    reference_images: Mapping[str, str],
    given: Mapping,
    fid_weights: str | None,
    guidance,
) -> dict:
    """What the suite's FID and CLIP score need, checked: ``{set, records, reference, skipped, fid_feature,
    fid_weights, clip_model}``; ``records`` are the reference prompts as prompts of ``concept``'s ``retain`` kind
    (rendered with the forget prompts), None when their file was not given.

    Raises:
        ValueError: one line: a reference folder of a set the suite does not have, or one that is not safe to read
            (:func:`read_reference_folder`); a prompt file that does not match its pin; a missing weights file.
    """
    from dataigm.prompts import subsample
    from dataigm.suite import prompt_records

    metrics = {m: v for m, v in (suite.data.get("metrics") or {}).items() if m in BETTER}
    sets = [p for p in suite.prompt_sets if p.kind == "reference"]
    unknown = sorted(set(reference_images) - {p.name for p in sets})
    if unknown:
        names = ", ".join(p.name for p in sets) or "none"
        raise ValueError(f"Suite {suite.id} has no reference set(s) {unknown}; its reference sets: {names}")
    out: dict = {"metrics": sorted(metrics), "records": None, "reference": None, "skipped": {}}
    if not metrics:
        return out
    clip = metrics.get("clip_score") or {}
    named = clip.get("prompts") if isinstance(clip, Mapping) else None
    prompt_set = next((p for p in sets if p.name == named), sets[0] if sets else None)
    if prompt_set is None:
        out["skipped"] = {m: f"suite {suite.id} names no reference prompt set" for m in metrics}
        return out
    out["set"] = prompt_set.name
    out["fid_feature"] = given.get("fid_feature") or INCEPTION
    out["fid_weights"] = fid_weights
    if fid_weights is not None and not Path(fid_weights).is_file():
        raise ValueError(f"--fid-weights {fid_weights!r} is not a file")
    out["clip_model"] = given.get("clip_model") or clip.get("model")
    if prompt_set.name in reference_images:
        out["reference"] = read_reference_folder(
            reference_images[prompt_set.name], f"--reference-images {prompt_set.name}"
        )
    path = prompt_files.get(prompt_set.name)
    if path is None:
        reason = (
            f"needs the suite's prompt file {prompt_set.file_name} (prompt set {prompt_set.name}; "
            f"`dataigm bench import`, then --prompt-file {prompt_set.name}=PATH)"
        )
        out["skipped"] = dict.fromkeys(metrics, reason)
        return out
    as_prompts = replace(prompt_set, concept=concept, kind="retain")  # read as prompts of the run's first concept
    records = subsample(prompt_records(suite, as_prompts, path), given.get("max_prompts"))
    if guidance == "per-prompt":
        records = [r if r.guidance is not None else replace(r, guidance=REFERENCE_GUIDANCE) for r in records]
    out["records"] = records
    if "fid" in metrics and out["reference"] is None:
        out["skipped"]["fid"] = (
            f"needs the reference images of {prompt_set.name}: --reference-images {prompt_set.name}=DIR "
            "(a folder of the images, see docs/bench.md)"
        )
    if "clip_score" in metrics and not out["clip_model"]:
        out["skipped"]["clip_score"] = f"suite {suite.id} names no CLIP model (metrics.clip_score.model)"
    return out


def _skipped(metric: str, reason: str) -> dict:
    return {"value": None, "ci": None, "ci_rule": None, "n": 0, "rule": metric, "better": BETTER[metric],
            "skipped": reason}  # fmt: skip


def quality_numbers(run, model: str, images, device: str) -> dict[str, dict]:
    """The run's FID and CLIP score of ``model`` (supplied numbers of its results file), or each skipped with
    its reason."""
    quality = run.quality
    out = {m: _skipped(m, reason) for m, reason in quality.get("skipped", {}).items()}
    records = quality.get("records")
    todo = [m for m in quality.get("metrics", []) if m not in out]
    if not todo or not records:
        return out
    ids = {r.prompt_id: r for r in records}
    mine: dict[str, object] = {}
    for im in images:  # one image per prompt: the first sample
        if im.model == model and im.kind == "retain" and im.family in ids:
            if im.family not in mine or im.sample < mine[im.family].sample:
                mine[im.family] = im
    missing = len(ids) - len(mine)
    if missing:
        reason = f"{missing} of the {len(ids)} reference prompts have no image of {model}"
        return out | {m: _skipped(m, reason) for m in todo}
    order = [mine[r.prompt_id] for r in records]
    if "clip_score" in todo:
        out["clip_score"] = clip_score(run, order, [ids[im.family].text for im in order], device)
    if "fid" in todo:
        out["fid"] = fid(run, order, device)
    return out


def _cache(run) -> Path:
    return run.out / "evaluation" / "cache" / "bench"


def clip_score(run, images, texts, device: str) -> dict:
    """CLIP score over the reference prompts with a bootstrap interval; per-prompt values under ``per_prompt``."""
    from dataigm.identity import state_dict_sha256
    from detectors.evaluation.cache import Cache, fingerprint
    from detectors.evaluation.images import LoadedImages
    from detectors.evaluation.quality import ClipScorer
    from detectors.stats import mean_with_ci

    name = run.quality["clip_model"]
    scorer = ClipScorer(name, device=device)
    backbone = {"model": name, "sha256": state_dict_sha256(scorer.model.state_dict())}
    inputs = {"backbone": backbone, "images": [[im.family, im.digest] for im in images], "texts": list(texts)}

    def compute() -> dict:
        return {"values": scorer.scores(LoadedImages(images), list(texts))}

    key = fingerprint(inputs)
    values = Cache(_cache(run)).get_or_compute(f"clip-{key[:16]}", key, compute, inputs)["values"]
    number = mean_with_ci(values, unit="prompts")
    return number | {
        "rule": CLIP_RULE.format(model=name), "better": "higher", "backbone": backbone,
        "prompt_set": run.quality["set"], "per_prompt": {im.family: v for im, v in zip(images, values, strict=True)},
    }  # fmt: skip


_BACKBONES: dict = {}  # this process's FID backbone: loaded once for the run's check and all its models


def fid_backbone(run, device: str):
    """The FID metric of the run (:func:`detectors.evaluation.quality.fid_metric`) and its identity: the suite's
    Inception-v3 (torchmetrics' FID with torch-fidelity's pool3 network, ``--fid-weights`` for a local copy), or
    a nonstandard ``fid_feature`` (a timm name; ``random:NAME`` gives it random weights from a fixed seed).
    Loaded once per (feature, weights file content, device) in a process."""
    from dataigm.identity import file_sha256, state_dict_sha256
    from detectors.evaluation.quality import RANDOM_BACKBONE_SEED, fid_metric

    feature, weights = run.quality["fid_feature"], run.quality["fid_weights"]
    weights_sha256 = None if weights is None else file_sha256(weights)
    key = (feature, weights, weights_sha256, device)
    if key not in _BACKBONES:
        random = feature.startswith("random:")
        metric = fid_metric(
            feature.removeprefix("random:"), weights_path=weights, device=device, pretrained=not random
        )
        identity = {"feature": feature, "sha256": state_dict_sha256(metric.inception.state_dict())}
        if weights_sha256 is not None:
            identity["weights_file_sha256"] = weights_sha256
        if random:
            identity["random_seed"] = RANDOM_BACKBONE_SEED
        _BACKBONES.clear()  # one at a time: a backbone is hundreds of MB
        _BACKBONES[key] = (metric, identity)
    return _BACKBONES[key]


def _features(run, name: str, inputs: Mapping, images, metric):
    """FID features cached as .npy by their inputs' fingerprint (10k reference images are read once)."""
    import numpy as np

    from detectors.evaluation.cache import fingerprint
    from detectors.evaluation.quality import fid_features

    path = _cache(run) / f"fid-{name}-{fingerprint(inputs)[:24]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    features = fid_features(images, metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, features, allow_pickle=False)
    tmp.replace(path)
    return features


class _Files:
    """Reference images loaded when indexed (RGB), never all held at once."""

    def __init__(self, files):
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        from PIL import Image

        if isinstance(index, slice):
            return _Files(self.files[index])
        with Image.open(self.files[index]) as image:
            return image.convert("RGB")


def fid(run, images, device: str) -> dict:
    """FID of the model's reference-prompt images against the reference folder, with the jackknife interval."""
    from detectors.evaluation.images import LoadedImages
    from detectors.evaluation.quality import fid_from_features

    metric, backbone = fid_backbone(run, device)
    reference = run.quality["reference"]
    mine = _features(run, "model", {"backbone": backbone, "images": [im.digest for im in images]},
                     LoadedImages(images), metric)  # fmt: skip
    theirs = _features(run, "reference", {"backbone": backbone, "folder": reference["sha256"]},
                       _Files(reference["files"]), metric)  # fmt: skip
    number = fid_from_features(mine, theirs)
    return number | {
        "rule": FID_RULE.format(backbone=backbone["feature"]), "better": "lower", "backbone": backbone,
        "prompt_set": run.quality["set"],
        "reference": {"set": run.quality["set"], "sha256": reference["sha256"], "n": len(reference["files"])},
    }  # fmt: skip
