"""Image-quality and similarity metrics with their backbones from well-kept libraries.

* FID: ``torchmetrics``' ``FrechetInceptionDistance`` (Inception weights from torch-fidelity, or a
  local file with ``weights_path``), or any timm model as the feature extractor.
* LPIPS: the reference ``lpips`` package (its linear calibration ships in the wheel; the AlexNet/VGG
  backbone comes from torchvision's cache, or random with ``random_backbone`` for tests).
* CLIP score: ``transformers``' ``CLIPModel`` from a Hub id or a local folder, per image:
  ``100 * max(cos(image, text), 0)`` (Hessel et al., 2021, as torchmetrics defines it).

Everything runs on any device; batches are never dropped (the paper's code dropped the last partial
batch and used CUDA-only tensors).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_CLIP = "openai/clip-vit-base-patch16"
MIN_LPIPS_SIZE = 64  # AlexNet's pooling leaves nothing of smaller images


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def to_uint8(images: Sequence, size: int | None = None) -> torch.Tensor:
    """PIL images -> uint8 tensor (N, 3, H, W), resized to ``size`` when given."""
    arrays = []
    for img in images:
        if size is not None and img.size != (size, size):
            img = img.resize((size, size))
        arrays.append(torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1))
    return torch.stack(arrays)


class TimmFeatures(torch.nn.Module):
    """A timm model's pooled features on uint8 images (resized and normalised by its data config)."""

    def __init__(self, model):
        super().__init__()
        import timm.data

        self.model = model.eval()
        cfg = timm.data.resolve_model_data_config(model)
        self.size = cfg["input_size"][1:]
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        x = torch.nn.functional.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return self.model.forward_head(self.model.forward_features((x - self.mean) / self.std), pre_logits=True)


def fid_metric(
    feature: str | torch.nn.Module = "inception",
    weights_path: str | None = None,
    device: str = "cpu",
    pretrained: bool = True,
):
    """A torchmetrics FID metric; ``feature`` is ``inception``, a timm model name, or a module.

    ``weights_path`` is a local file for the Inception network or the timm model (offline use);
    ``pretrained=False`` gives a timm model random weights (tests only: such an FID means nothing).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if feature == "inception":
        metric = FrechetInceptionDistance(
            feature=2048, feature_extractor_weights_path=weights_path, reset_real_features=True
        )
    else:
        if isinstance(feature, str):
            import timm

            options = {"pretrained_cfg_overlay": {"file": weights_path}} if weights_path else {}
            feature = timm.create_model(feature, pretrained=pretrained, num_classes=0, **options)
        metric = FrechetInceptionDistance(
            feature=feature if not hasattr(feature, "default_cfg") else TimmFeatures(feature)
        )
    return metric.to(device)


def fid(images_a: Sequence, images_b: Sequence, metric, batch_size: int = 32) -> float:
    """FID between two sets of PIL images with a metric from :func:`fid_metric` (reset before use)."""
    if len(images_a) < 2 or len(images_b) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(images_a)} and {len(images_b)}")
    metric.reset()
    device = metric.device
    for real, images in ((True, images_a), (False, images_b)):
        for batch in _batches(list(images), batch_size):
            metric.update(to_uint8(batch).to(device), real=real)
    return float(metric.compute())


class LpipsScorer:
    """Per-pair LPIPS distances (lower = more similar)."""

    def __init__(self, net: str = "alex", device: str = "cpu", random_backbone: bool = False, size: int | None = None):
        try:
            import lpips
        except ImportError:
            raise ValueError("LPIPS needs the lpips package: pip install lpips") from None
        self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=random_backbone, verbose=False).to(device).eval()
        self.device = device
        self.size = size

    @torch.no_grad()
    def distances(self, pairs: Sequence[tuple], batch_size: int = 16) -> list[float]:
        out: list[float] = []
        for batch in _batches(list(pairs), batch_size):
            size = self.size or max(batch[0][0].size[0], MIN_LPIPS_SIZE)
            a = to_uint8([p[0] for p in batch], size).float().to(self.device) / 127.5 - 1
            b = to_uint8([p[1] for p in batch], size).float().to(self.device) / 127.5 - 1
            out += self.model(a, b).flatten().tolist()
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
