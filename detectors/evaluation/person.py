"""Person rate: the share of images in which a detector finds a person (for human-carried concepts:
an unlearned nudity model should still draw the person, clothed).

The detector is configurable; the default is torchvision's COCO Faster R-CNN (label 1 = person),
with weights from torchvision's cache or a local file. The paper used a YOLO model, whose license
(AGPL) we do not want to pull into the project.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dataigm.weights_files import torch_load_safely
from detectors.evaluation.defaults import DEFAULT_DETECTOR

COCO_PERSON = 1


class PersonDetector:
    """``detect(images) -> [bool]``: whether each image holds a person with score >= ``threshold``."""

    def __init__(
        self,
        model: str = DEFAULT_DETECTOR,
        weights_path: str | None = None,
        pretrained: bool = True,
        threshold: float = 0.5,
        device: str = "cpu",
    ):
        import torchvision

        if model not in torchvision.models.list_models(torchvision.models.detection):
            known = ", ".join(torchvision.models.list_models(torchvision.models.detection))
            raise ValueError(f"Unknown person detector {model!r}; torchvision detection models: {known}")
        from detectors.evaluation.quality import seeded_init

        use_default = pretrained and weights_path is None
        with seeded_init():  # without weights (tests) the detector's random weights come from the fixed seed
            self.model = torchvision.models.get_model(
                model, weights="DEFAULT" if use_default else None, weights_backbone=None, num_classes=91
            )
        if weights_path is not None:
            state = torch_load_safely(weights_path, f"Person detector weights {str(weights_path)!r}")
            self.model.load_state_dict(state)
        self.model.to(device).eval()
        self.threshold = threshold
        self.device = device

    @torch.no_grad()
    def detect(self, images: Sequence, batch_size: int = 8) -> list[bool]:
        from torchvision.transforms.functional import pil_to_tensor

        found = []
        for start in range(0, len(images), batch_size):
            batch = [pil_to_tensor(img).float().div(255).to(self.device) for img in images[start : start + batch_size]]
            for out in self.model(batch):
                hits = (out["labels"] == COCO_PERSON) & (out["scores"] >= self.threshold)
                found.append(bool(hits.any()))
        return found
