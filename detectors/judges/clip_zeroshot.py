"""CLIP zero-shot "CLIP accuracy": is an image closer to the target text than to the anchor text?

The probability is CLIP's softmax over the two prompts (target, anchor), taken for the target; the
concept is called present from ``threshold`` (0.5: the target text wins). Any ``transformers``
``CLIPModel`` folder or Hub id works, e.g. ``openai/clip-vit-large-patch14`` or a local copy of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dataigm.devices import resolve_device
from detectors.judges.base import Judge
from detectors.judges.options import Option, parse_options, resolve_options, split_spec
from detectors.judges.registry import register_judge

if TYPE_CHECKING:
    import torch

# the registered example, also shown by the error for a missing required option
EXAMPLE = "clip-zeroshot:model=openai/clip-vit-base-patch32,target=nude,anchor=properly dressed"
OPTIONS = (
    Option("model", str, None, "a CLIPModel folder or Hub id", required=True),
    Option("target", str, None, "text of the concept, e.g. nude", required=True),
    Option("anchor", str, None, "text without it, e.g. properly dressed", required=True),
    Option("template", str, "{}", "prompt template, e.g. 'a photo of {}'"),
    Option("concept", str, None, "the dataset concept this judge scores (default: the target text)"),
    Option("threshold", float, 0.5, "target probability from which the concept counts as present"),
)


class ClipImageTransform:
    """PIL image -> CLIP ``pixel_values`` (picklable, so it runs in DataLoader workers)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]


class ClipZeroShotJudge(Judge):
    """Two-prompt zero-shot classification with a ``transformers`` CLIP model."""

    kind = "clip-zeroshot"

    def __init__(
        self,
        model: str,
        target: str,
        anchor: str,
        concept: str | None = None,
        template: str = "{}",
        threshold: float = 0.5,
        spec: str = "",
        device: str = "cpu",
    ):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        if "{}" not in template:
            raise ValueError(f"CLIP template {template!r} must contain '{{}}' where the text goes")
        concept = concept or target
        super().__init__([concept], {concept: threshold}, spec, device)
        self.model_id, self.target, self.anchor = model, target, anchor
        try:
            self.model = CLIPModel.from_pretrained(model).eval().to(self.device)
            tokenizer = AutoTokenizer.from_pretrained(model)
            processor = AutoImageProcessor.from_pretrained(model)
        except OSError as err:
            raise ValueError(
                f"Cannot load the CLIP model {model!r} ({err}); give a local folder or a reachable Hub id"
            ) from None
        self.texts = [template.format(target), template.format(anchor)]
        self.tokens = tokenizer(self.texts, padding=True, return_tensors="pt")
        self.image_transform = ClipImageTransform(processor)

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu") -> ClipZeroShotJudge:
        """Build from ``clip-zeroshot:model=…,target=…,anchor=…[,template=…,concept=…,threshold=…]``."""
        kind, rest = split_spec(spec)
        options = resolve_options(kind, parse_options(rest), OPTIONS, EXAMPLE)
        return cls(spec=spec, device=device, **options)

    def to(self, device) -> ClipZeroShotJudge:
        super().to(device)
        self.model.to(self.device)
        return self

    def forward(self, batch: torch.Tensor) -> tuple[np.ndarray, None]:
        import torch

        tokens = {k: v.to(self.device) for k, v in self.tokens.items()}
        with torch.inference_mode():
            out = self.model(**tokens, pixel_values=batch.to(self.device))
        probs = out.logits_per_image.float().softmax(dim=-1)[:, :1]
        return probs.double().cpu().numpy(), None

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model_id, "texts": self.texts}

    def _fingerprint_parts(self) -> dict:
        """The spec, the CLIP weights as loaded, the token ids of the two texts and the image preprocessing."""
        return {
            **super()._fingerprint_parts(),
            "token_ids": self.tokens["input_ids"].tolist(),
            "image_processor": self.image_transform.processor.to_dict(),
        }


@register_judge(
    "clip-zeroshot",
    help="CLIP zero-shot 'CLIP accuracy' (target text against anchor text)",
    example=EXAMPLE,
    options=OPTIONS,
)
def load_clip_zeroshot(spec: str, device: str | None = None) -> ClipZeroShotJudge:
    """``clip-zeroshot:OPTIONS`` -> :class:`ClipZeroShotJudge` on ``device`` (auto: CUDA when available)."""
    return ClipZeroShotJudge.from_spec(spec, resolve_device(device))
