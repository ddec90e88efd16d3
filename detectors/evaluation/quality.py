"""Image-quality and similarity metrics with their backbones from well-kept libraries.

* FID: the feature extractor of ``torchmetrics``' ``FrechetInceptionDistance`` (Inception weights from
  torch-fidelity, or a local file with ``weights_path``), or any timm model. Features are extracted once;
  the Fréchet distance (torchmetrics' formula, checked against ``scipy.linalg.sqrtm`` in the tests) is
  computed from them, for the value and for each jackknife replicate of its interval (FID at these set sizes). Each image is
  resized on its own to the extractor's input size (:data:`FID_RESIZE_RULE`).
* LPIPS: the reference ``lpips`` package (its linear calibration ships in the wheel; the AlexNet/VGG
  backbone comes from torchvision's cache, or random with ``random_backbone`` for tests). Each pair is
  sized from itself only (:data:`LPIPS_RULE`).
* CLIP score: ``transformers``' ``CLIPModel`` from a Hub id or a local folder, per image:
  ``100 * max(cos(image, text), 0)`` (Hessel et al., 2021, as torchmetrics defines it).

Everything runs on any device; batches are never dropped (the paper's code dropped the last partial
batch and used CUDA-only tensors).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np
import torch

from detectors.evaluation.defaults import DEFAULT_CLIP
from detectors.stats import Z95

logger = logging.getLogger(__name__)
MIN_LPIPS_SIZE = 64  # AlexNet's pooling leaves nothing of smaller images
# Seed of every backbone built with random weights (fid_pretrained: false, lpips_random_backbone, a person
# detector without weights): two runs give the same numbers, and the cache keys hold it (detectors.evaluation.plan).
RANDOM_BACKBONE_SEED = 0


@contextlib.contextmanager
def seeded_init(seed: int = RANDOM_BACKBONE_SEED):
    """Build modules inside this to give their random initial weights from ``seed``; torch's global random state
    is restored afterwards (the caller's draws are not moved)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _uint8(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


FID_RESIZE_RULE = (
    "each image resized on its own to the feature extractor's input size (299 x 299 for Inception, the timm "
    "model's data-config size), bilinear with antialias, rounded to uint8; aspect ratio not kept (as clean-fid, "
    "torch-fidelity and torchmetrics)"
)


def resize_for_fid(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The FID resize rule for one (3, H, W) uint8 image: to the feature extractor's input size (H, W), bilinear
    with antialias (what torchmetrics' Inception does inside), rounded back to uint8. The aspect ratio is not
    kept, as in clean-fid, torch-fidelity and torchmetrics. An image already at ``size`` is left as it is."""
    if tuple(image.shape[1:]) == tuple(size):
        return image
    x = torch.nn.functional.interpolate(
        image[None].float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False
    )
    return x.round().clamp(0, 255).to(torch.uint8)[0]


class TimmFeatures(torch.nn.Module):
    """A timm model's pooled features on uint8 images (resized and normalised by its data config)."""

    def __init__(self, model):
        super().__init__()
        import timm.data

        self.model = model.eval()
        cfg = timm.data.resolve_model_data_config(model)
        self.size = tuple(cfg["input_size"][1:])
        self.num_features = int(model.num_features)
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        x = torch.nn.functional.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return self.model.forward_head(self.model.forward_features((x - self.mean) / self.std), pre_logits=True)


class TimmFid(torch.nn.Module):
    """What :func:`fid_features` uses of an FID metric (``inception``: the extractor, ``device``) for a timm
    extractor, without importing torchmetrics (seconds of imports for a metric class whose state goes unused)."""

    def __init__(self, extractor: TimmFeatures):
        super().__init__()
        self.inception = extractor

    @property
    def device(self) -> torch.device:
        return self.inception.mean.device


def fid_metric(
    feature: str | torch.nn.Module = "inception",
    weights_path: str | None = None,
    device: str = "cpu",
    pretrained: bool = True,
    seed: int = RANDOM_BACKBONE_SEED,
):
    """The feature extractor of an FID, as ``metric.inception``: ``feature`` is ``inception`` (torchmetrics'
    FID metric and its Inception), a timm model name or model (:class:`TimmFid`), or another module
    (torchmetrics' metric around it).

    ``weights_path`` is a local file for the Inception network or the timm model (offline use);
    ``pretrained=False`` gives a timm model random weights drawn from ``seed`` (tests only: such an FID means
    nothing, but two runs give the same one).
    :func:`fid` and :func:`fid_with_ci` compute the distance from the extracted features.
    """
    if isinstance(feature, str) and feature != "inception":
        import timm

        options = {"pretrained_cfg_overlay": {"file": weights_path}} if weights_path else {}
        with seeded_init(seed):
            feature = timm.create_model(feature, pretrained=pretrained, num_classes=0, **options)
    if hasattr(feature, "default_cfg"):  # a timm model
        return TimmFid(TimmFeatures(feature)).to(device)
    from torchmetrics.image.fid import FrechetInceptionDistance

    if feature == "inception":
        metric = FrechetInceptionDistance(
            feature=2048, feature_extractor_weights_path=weights_path, reset_real_features=True
        )
    else:
        metric = FrechetInceptionDistance(feature=feature)
    return metric.to(device)


def fid_input_size(metric) -> tuple[int, int] | None:
    """The (H, W) the metric's feature extractor takes: 299 for Inception, the data config's size for a timm
    model, None for another module (its images must then share one size)."""
    extractor = metric.inception
    if isinstance(extractor, TimmFeatures):
        return tuple(extractor.size)
    size = getattr(extractor, "INPUT_IMAGE_SIZE", None)  # torchmetrics' / torch-fidelity's Inception: 299
    return None if size is None else (int(size), int(size))


class _FidInputs(torch.utils.data.Dataset):
    """Image ``index`` of a sequence of PIL images as a uint8 (3, H, W) tensor, resized on its own by the FID rule
    (:func:`resize_for_fid`) when ``size`` is given."""

    def __init__(self, images: Sequence, size: tuple[int, int] | None):
        self.images, self.size = images, size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = _uint8(self.images[index])
        return image if self.size is None else resize_for_fid(image, self.size)


def _pixels(image) -> int:
    return image.width * image.height


def _stack_one_size(images: list[torch.Tensor]) -> torch.Tensor:
    shapes = sorted({tuple(x.shape[1:]) for x in images})
    if len(shapes) > 1:
        raise ValueError(f"Images of different sizes {shapes} and no input size to resize them to")
    return torch.stack(images)


@torch.no_grad()
def fid_features(images: Sequence, metric, batch_size: int = 32, num_workers: int | None = None) -> np.ndarray:
    """(N, d) float64 features of PIL images by the metric's extractor, each image resized on its own.

    Args:
        images: PIL images, or a sequence that loads each when indexed (:class:`~detectors.evaluation.images.LoadedImages`).
        metric: a metric from :func:`fid_metric` (its feature extractor).
        batch_size: images per forward.
        num_workers: DataLoader worker processes that load and resize the images (0: this process; None: sized to
            the host, none for a small pass or small images: :func:`detectors.data.one_pass_workers`); the features do
            not depend on it.
    """
    from detectors.data import one_pass_workers

    size, device = fid_input_size(metric), metric.device
    loader = torch.utils.data.DataLoader(
        _FidInputs(images, size),
        batch_size=batch_size,
        num_workers=one_pass_workers(num_workers, len(images), batch_size, lambda: _pixels(images[0])),
        collate_fn=_stack_one_size,
    )
    parts = [metric.inception(batch.to(device)).double().reshape(len(batch), -1).cpu().numpy() for batch in loader]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def _factors(features: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means (B, d) and factors F (B, ., d) with F.T @ F = the sample covariance (denominator n - 1, as
    torchmetrics), one per row of ``weights`` (B, n): multiplicities of the rows of ``features`` (n, d).

    F is the scaled centred rows when there are no more rows than dimensions, else the symmetric square
    root of the covariance (d x d).
    """
    n_rows, d = features.shape
    n = weights.sum(-1, keepdim=True)
    mean = (weights @ features) / n
    rows = (features[None] - mean[:, None]) * (weights / (n - 1)).sqrt()[..., None]
    if n_rows <= d:
        return mean, rows
    eigenvalues, vectors = torch.linalg.eigh(rows.transpose(-1, -2) @ rows)
    return mean, (vectors * eigenvalues.clamp(min=0).sqrt()[..., None, :]) @ vectors.transpose(-1, -2)


def fid_replicates(features_a: torch.Tensor, features_b: torch.Tensor, weights_a, weights_b) -> torch.Tensor:
    """The Fréchet distance of each pair of rows of ``weights_a`` (B, n_a) and ``weights_b`` (B, n_b):
    multiplicities of the two feature sets' rows (all ones: the sets themselves; a bootstrap draw: a replicate).

    All pairs are computed together, in chunks of bounded memory: one batched product and one batched SVD
    instead of a loop of small ones (200 replicates of 30 images: a twentieth of the time on a CPU).
    """
    a, b = features_a, features_b
    wa = torch.as_tensor(weights_a, dtype=a.dtype, device=a.device)
    wb = torch.as_tensor(weights_b, dtype=b.dtype, device=b.device)
    d = a.shape[1]
    per_pair = 8 * d * (a.shape[0] + b.shape[0] + 2 * d)  # bytes of the centred rows and factors of one pair
    step = max(1, _CHUNK_BYTES // per_pair)
    out = []
    for start in range(0, len(wa), step):
        mean_a, factor_a = _factors(a, wa[start : start + step])
        mean_b, factor_b = _factors(b, wb[start : start + step])
        # tr((S_a S_b)^(1/2)) = nuclear norm of F_a F_b^T when S = F^T F (the eigenvalues of S_a S_b are the
        # squared singular values of F_a F_b^T): exact, and small when a set has fewer images than dimensions.
        cross = torch.linalg.svdvals(factor_a @ factor_b.transpose(-1, -2)).sum(-1)
        traces = factor_a.square().sum((-1, -2)) + factor_b.square().sum((-1, -2))
        out.append((mean_a - mean_b).square().sum(-1) + traces - 2 * cross)
    return torch.cat(out)


_CHUNK_BYTES = 2**28  # memory of one chunk of replicates
_LOGGED: set[str] = set()  # small-set warnings logged already (each result carries its own)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, d):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, covariances with denominator n - 1."""
    a, b = torch.as_tensor(features_a, dtype=torch.float64), torch.as_tensor(features_b, dtype=torch.float64)
    return float(fid_replicates(a, b, torch.ones(1, len(a)), torch.ones(1, len(b)))[0])


FID_GROUPS = 100
FID_ESTIMAND = (
    "FID at these set sizes: the interval is for the mean of the FID estimator over pairs of sets of these sizes "
    "drawn from the two image populations (FID is biased upward at small n, so this is not the FID of the "
    "populations; compare FIDs only at equal set sizes)"
)
FID_RULE = (
    "for FID at these set sizes (the mean FID of sets of these sizes drawn from the two populations): "
    "value x exp(± 1.96 x jackknife standard error / value) (the delta-method interval on log FID: FID is "
    "positive and skewed to the right), with each image left out in turn (in {groups} random groups "
    "of a set larger than {groups}, seed {seed}), model and reference sets in turn, FID recomputed from cached "
    "features; the jackknife variance errs on the large side (Efron & Stein 1981) but far less than a bootstrap's, "
    "whose resamples repeat images and inflate FID's spread"
)


def _leave_out(n: int, groups: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Rows of multiplicities that each leave out one image (n <= groups) or one of ``groups`` random groups."""
    if n <= groups:
        return 1.0 - np.eye(n), n
    labels = rng.permutation(n) % groups
    return (labels[None, :] != np.arange(groups)[:, None]).astype(np.float64), groups


def fid_from_features(
    features_model, features_reference, groups: int = FID_GROUPS, seed: int = 0, device: str | torch.device = "cpu"
) -> dict:
    """FID of two feature sets with both set sizes, an interval for FID at these set sizes, and a warning
    when a set has no more images than feature dimensions.

    The interval (:data:`FID_RULE`, estimand :data:`FID_ESTIMAND`) is ``value * exp(± 1.96 se / value)`` with
    ``se`` the two-sample jackknife standard error (``se`` in the result): the jackknife variance of each set, ``(g - 1) / g * sum (FID_(-j) - mean)^2`` over its g left-out
    images or groups, added over the two independent sets. A bootstrap standard error was 1.2-1.6 x the true
    spread of FID at these sizes (resamples repeat images: a covariance from fewer distinct images), the
    jackknife's 1.0-1.3 x (docs/intervals.md has the simulation).

    Why the warning: with n <= d the sample covariance has rank <= n - 1 < d, and FID is biased upward
    at small n (Chong & Forsyth, "Effectively Unbiased FID and Inception Score and where to find them",
    CVPR 2020); the FID authors (github.com/bioinf-jku/TTUR) ask for more samples than the 2048
    Inception dimensions and recommend at least 10,000. Such FIDs compare only at equal set sizes.

    Each replicate costs one SVD of a min(n_model, d) x min(n_reference, d) matrix (plus two d x d
    eigendecompositions for a set larger than d); at most ``2 * groups`` replicates, batched
    (:func:`fid_replicates`), on ``device``.

    Args:
        features_model, features_reference: (n, d) features of the two sets.
        groups: the most left-out units per set (a larger set is split into this many random groups).
        seed: seed of the grouping.
        device: where the linear algebra runs.
    """
    a = torch.as_tensor(np.asarray(features_model), dtype=torch.float64, device=device)
    b = torch.as_tensor(np.asarray(features_reference), dtype=torch.float64, device=device)
    (n_a, d), n_b = a.shape, b.shape[0]
    if n_a < 2 or n_b < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n_a} and {n_b}")
    value = frechet_distance(a, b)
    out = {
        "value": value,
        "n": min(n_a, n_b),
        "n_model": n_a,
        "n_reference": n_b,
        "feature_dim": d,
        "ci": [None, None],
        "ci_rule": FID_RULE.format(groups=groups, seed=seed),
        "estimand": FID_ESTIMAND,
    }
    if min(n_a, n_b) < 3:  # leaving one image out of two leaves no covariance
        out["ci_skipped"] = "skipped: a set of 2 images leaves no covariance when one is left out"
    else:
        rng = np.random.default_rng(seed)
        variance = 0.0
        for side in ("model", "reference"):
            n_out = n_a if side == "model" else n_b
            weights, g = _leave_out(n_out, groups, rng)
            ones = np.ones((g, n_b if side == "model" else n_a))
            pair = (weights, ones) if side == "model" else (ones, weights)
            replicates = fid_replicates(a, b, *pair).cpu().numpy()
            variance += (g - 1) / g * float(((replicates - replicates.mean()) ** 2).sum())
        se = variance**0.5
        # on the log scale (delta method): FID is positive with a right tail, and a symmetric interval missed
        # mostly on one side (docs/intervals.md)
        spread = np.exp(Z95 * se / value) if value > 0 else None
        out["ci"] = [value / spread, value * spread] if spread is not None else [0.0, Z95 * se]
        out["se"] = se
    if min(n_a, n_b) <= d:
        out["warning"] = (
            f"FID from {n_a} model and {n_b} reference images with {d}-dimensional features: a set with no "
            f"more images than dimensions has a rank-deficient covariance (rank <= n - 1 < {d}) and FID is "
            "biased upward at small n (Chong & Forsyth, CVPR 2020; the FID authors ask for more than the "
            "feature dimension, ideally 10,000 images); compare such FIDs only at equal set sizes"
        )
        if out["warning"] not in _LOGGED:  # an evaluation meets the same sizes for every model: say it once
            _LOGGED.add(out["warning"])
            logger.warning(out["warning"])
    return out


def fid(images_a: Sequence, images_b: Sequence, metric, batch_size: int = 32, num_workers: int | None = None) -> float:
    """FID between two sets of PIL images with a metric from :func:`fid_metric` (its feature extractor).

    Each image is resized on its own to the extractor's input size (:func:`resize_for_fid`); ``num_workers`` as
    in :func:`fid_features`.
    """
    if len(images_a) < 2 or len(images_b) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(images_a)} and {len(images_b)}")
    return frechet_distance(
        fid_features(images_a, metric, batch_size, num_workers),
        fid_features(images_b, metric, batch_size, num_workers),
    )


def fid_with_ci(
    images_model: Sequence,
    images_reference: Sequence,
    metric,
    groups: int = FID_GROUPS,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int | None = None,
) -> dict:
    """:func:`fid` with both set sizes, a jackknife interval and a small-set warning (:func:`fid_from_features`)."""
    if len(images_model) < 2 or len(images_reference) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(images_model)} and {len(images_reference)}")
    return fid_from_features(
        fid_features(images_model, metric, batch_size, num_workers),
        fid_features(images_reference, metric, batch_size, num_workers),
        groups,
        seed,
    )


LPIPS_RULE = (
    "per pair: both images fitted (PIL ImageOps.fit, bicubic: shorter side scaled, centre crop, aspect kept) "
    "to the reference image's size, scaled up with its aspect kept so that its shorter side is at least {min}"
)


def lpips_size(reference_size: tuple[int, int], minimum: int = 64) -> tuple[int, int]:
    """The (W, H) a pair is compared at, from its reference image's (W, H) alone."""
    w, h = reference_size
    scale = max(1.0, minimum / min(w, h))
    return (round(w * scale), round(h * scale))


class LpipsScorer:
    """Per-pair LPIPS distances (lower = more similar); each pair is sized from itself only (:data:`LPIPS_RULE`)."""

    def __init__(
        self,
        net: str = "alex",
        device: str = "cpu",
        random_backbone: bool = False,
        size: int | None = None,
        seed: int = RANDOM_BACKBONE_SEED,
    ):
        try:
            import lpips
        except ImportError:
            raise ValueError("LPIPS needs the lpips package: pip install lpips") from None
        with seeded_init(seed):  # a random backbone (tests) is drawn from the seed
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=random_backbone, verbose=False)
        self.model = model.to(device).eval()
        self.device = device
        self.size = size
        self.rule = (
            f"square {size} x {size}, " + LPIPS_RULE.format(min=size)
            if size
            else LPIPS_RULE.format(min=MIN_LPIPS_SIZE)
        )

    def pair_size(self, reference) -> tuple[int, int]:
        """The (W, H) a pair with this reference image is compared at."""
        return (self.size, self.size) if self.size else lpips_size(reference.size, MIN_LPIPS_SIZE)

    @torch.no_grad()
    def distances(self, pairs: Sequence[tuple], batch_size: int = 16) -> list[float]:
        from PIL import Image, ImageOps

        out: list[float] = []
        for batch in _batches(list(pairs), batch_size):
            fitted = []
            for a, b in batch:
                size = self.pair_size(b)
                fitted.append(
                    tuple(
                        _uint8(ImageOps.fit(im.convert("RGB"), size, method=Image.Resampling.BICUBIC)) for im in (a, b)
                    )
                )
            values = [0.0] * len(batch)
            # pairs of one size go through the network together; a pair's value never depends on the others'
            for shape in sorted({tuple(x.shape) for x, _ in fitted}):
                index = [i for i, (x, _) in enumerate(fitted) if tuple(x.shape) == shape]
                a = torch.stack([fitted[i][0] for i in index]).float().to(self.device) / 127.5 - 1
                b = torch.stack([fitted[i][1] for i in index]).float().to(self.device) / 127.5 - 1
                for i, v in zip(index, self.model(a, b).flatten().tolist(), strict=True):
                    values[i] = v
            out += values
        return out


class ClipScorer:
    """CLIP score of each (image, text) pair."""

    def __init__(self, model: str = DEFAULT_CLIP, device: str = "cpu"):
        from transformers import CLIPModel, CLIPProcessor

        self.model = CLIPModel.from_pretrained(model).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(model)
        self.device = device

    @torch.no_grad()
    def scores(self, images: Sequence, texts: Sequence[str], batch_size: int = 32) -> list[float]:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        out: list[float] = []
        for start in range(0, len(images), batch_size):
            inputs = self.processor(
                text=list(texts[start : start + batch_size]),
                images=list(images[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
            ).to(self.device)
            out_pair = self.model(**inputs)  # image_embeds/text_embeds: projected, as in every transformers version
            cos = torch.nn.functional.cosine_similarity(out_pair.image_embeds, out_pair.text_embeds, dim=-1)
            out += (100 * cos.clamp(min=0)).tolist()
        return out


def csdr(score_original: float, score_unlearned: float) -> float:
    """CLIP Score Difference Rate of one pair, in percent: |CS(M(P̂)) - CS(M_u(P))| / CS(M(P̂)) * 100.

    Both scores are against the clean target-free text P̂ (the paper's code scored against a string made
    by concatenating several partial removals of the prompt).
    """
    if score_original <= 0:
        return float("nan")
    return abs(score_original - score_unlearned) / score_original * 100
