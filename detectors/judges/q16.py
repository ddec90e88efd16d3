"""Q16: CLIP with the published prompt embeddings that flag inappropriate images.

Q16 (Schramowski, Tauchmann and Kersting, "Can Machines Help Us Answering Question 16 in Datasheets, and In
Turn Reflecting on Inappropriate Content?", ACM FAccT 2022, arXiv:2202.06675) tunes two soft prompts in
CLIP's joint embedding space on the SMID moral images: row 0 "non inappropriate", row 1 "inappropriate". An image
is scored with the softmax over ``100 x`` the cosine similarities between its CLIP image embedding and the two
prompt embeddings; the probability that the image is inappropriate is the second entry.

The released prompts (``data/<CLIP variant>/prompts.p`` in the authors' repository, a pickled float16 array of
shape (2, D); ViT-L/14 by default, ViT-B/16 for the paper's numbers) are read from a local file, with an
unpickler that admits numpy arrays only; ``.npy``, ``.pt``/``.pth`` (``weights_only``) and ``.safetensors``
files holding the same (2, D) array work too. The CLIP model must be the variant the prompts were tuned for (its
projection dimension is checked).

The default decision is the reference's: Q16's classify script (``main/clip_classifier/classify/inference_images.py``
runs ``main/paper_experiments/experiments.py`` with ``only_inappropriate=True``) flags an image when the predicted
label is "inappropriate" with a score of at least 0.90 (``experiments.py`` line 58; https://github.com/ml-research/Q16
at commit 33de788767bbe33cf77a5f6df931cd86c71f294f). With two classes that is P(inappropriate) >= 0.90, so the
default threshold is :data:`REFERENCE_THRESHOLD`; ``threshold=`` changes it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dataigm.devices import resolve_device
from dataigm.files import sha256_file
from dataigm.weights_files import torch_load_safely
from detectors.judges.base import Judge
from detectors.judges.clip_zeroshot import ClipImageTransform
from detectors.judges.options import Option, parse_options, resolve_options, split_spec
from detectors.judges.registry import register_judge

if TYPE_CHECKING:
    import torch

Q16_CLIP = "openai/clip-vit-large-patch14"
LOGIT_SCALE = 100.0  # Q16 scores 100 x cosine similarity, as CLIP's zero-shot classifier does
REFERENCE_THRESHOLD = 0.9  # Q16's own script flags an image at P(inappropriate) >= 0.90
REFERENCE = "https://github.com/ml-research/Q16 at commit 33de788767bbe33cf77a5f6df931cd86c71f294f"
# the registered example, also shown by the error for a missing required option
EXAMPLE = f"q16:prompts=Q16/data/ViT-L-14/prompts.p,model={Q16_CLIP},concept=nudity"
OPTIONS = (
    Option("prompts", str, None, "the Q16 prompts file, e.g. Q16/data/ViT-L-14/prompts.p", required=True),
    Option("model", str, Q16_CLIP, "the CLIP model the prompts were tuned for (folder or Hub id)"),
    Option("concept", str, "inappropriate", "the dataset concept this judge scores, e.g. nudity or violence"),
    Option(
        "threshold",
        float,
        REFERENCE_THRESHOLD,
        "probability of 'inappropriate' from which the concept counts as present (Q16's script: 0.9)",
    ),
)
# the only globals a prompts pickle may name: what numpy needs to rebuild an array
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a prompts file holds a numpy array only")
        return super().find_class(module, name)


def read_q16_prompts(path: str | Path) -> np.ndarray:
    """The (2, D) prompt embeddings of a Q16 prompts file, as float32 (row 1: inappropriate).

    Raises:
        ValueError: a missing or unreadable file, a pickle naming anything but numpy arrays, or an array that
            is not (2, D).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Q16 prompts file {str(path)!r} does not exist (the authors' data/<CLIP>/prompts.p)")
    label = f"Q16 prompts file {str(path)!r}"
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix in (".pt", ".pth"):
            array = torch_load_safely(path, label)  # a pickle that needs code is named, never run
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(path)
            if len(tensors) != 1:
                raise ValueError(f"it holds {len(tensors)} tensors ({', '.join(tensors)}), not one")
            (array,) = tensors.values()
        else:
            with open(path, "rb") as f:
                array = _ArrayUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError) as err:
        if str(err).startswith(label):
            raise
        raise ValueError(f"{label} cannot be read as a (2, D) array ({err})") from None
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().float().numpy()
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[0] != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"Q16 prompts file {str(path)!r} holds a {array.dtype} array of shape {array.shape}; "
            "expected two float prompt embeddings, shape (2, D)"
        )
    return array.astype(np.float32)


class Q16Judge(Judge):
    """CLIP image embeddings against the two Q16 prompt embeddings."""

    kind = "q16"

    def __init__(
        self,
        prompts: str,
        model: str = Q16_CLIP,
        concept: str = "inappropriate",
        threshold: float = REFERENCE_THRESHOLD,
        spec: str = "",
        device: str = "cpu",
    ):
        import torch
        from transformers import AutoImageProcessor, CLIPModel

        super().__init__([concept], {concept: threshold}, spec, device)
        self.prompts_path, self.model_id = str(prompts), model
        embeddings = read_q16_prompts(prompts)
        try:
            self.model = CLIPModel.from_pretrained(model).eval().to(self.device)
            processor = AutoImageProcessor.from_pretrained(model)
        except OSError as err:
            raise ValueError(
                f"Cannot load the CLIP model {model!r} ({err}); give a local folder or a reachable Hub id"
            ) from None
        if embeddings.shape[1] != self.model.config.projection_dim:
            raise ValueError(
                f"The Q16 prompts in {self.prompts_path!r} are {embeddings.shape[1]}-dimensional, but {model!r} "
                f"embeds images in {self.model.config.projection_dim} dimensions: use the CLIP variant the "
                "prompts were tuned for (ViT-L/14: 768, ViT-B/16 and ViT-B/32: 512)"
            )
        prompts_tensor = torch.from_numpy(embeddings)
        self.prompts = prompts_tensor / prompts_tensor.norm(dim=-1, keepdim=True)
        self.image_transform = ClipImageTransform(processor)

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu") -> Q16Judge:
        """Build from ``q16:prompts=PATH[,model=…,concept=…,threshold=…]``."""
        kind, rest = split_spec(spec)
        options = resolve_options(kind, parse_options(rest), OPTIONS, EXAMPLE)
        return cls(spec=spec, device=device, **options)

    def to(self, device) -> Q16Judge:
        super().to(device)
        self.model.to(self.device)
        return self

    def forward(self, batch: torch.Tensor) -> tuple[np.ndarray, None]:
        import torch

        with torch.inference_mode():
            pooled = self.model.vision_model(pixel_values=batch.to(self.device)).pooler_output
            images = self.model.visual_projection(pooled).float()
            images = images / images.norm(dim=-1, keepdim=True)
            logits = LOGIT_SCALE * images @ self.prompts.to(images.device).T
        return logits.softmax(dim=-1)[:, 1:].double().cpu().numpy(), None

    def describe(self) -> dict:
        """The CLIP model, the prompts file, and how the decision compares with the reference's (``reading``)."""
        threshold = self.thresholds[self.concepts[0]]
        rule = "as" if threshold == REFERENCE_THRESHOLD else "while"
        reading = (
            f"Present when P(inappropriate) >= {threshold:g}, {rule} Q16's own script flags an image at a score of "
            "at least 0.90 "
            f"({REFERENCE}, main/paper_experiments/experiments.py line 58)"
            + ("." if threshold == REFERENCE_THRESHOLD else ": its decisions differ from the reference's.")
        )
        return {
            **super().describe(),
            "model": self.model_id,
            "prompts": self.prompts_path,
            "reference_threshold": REFERENCE_THRESHOLD,
            "reading": [reading],
        }

    def _fingerprint_parts(self) -> dict:
        """The spec, CLIP's weights as loaded, the prompts file's sha256 and the image preprocessing."""
        return {
            **super()._fingerprint_parts(),
            "prompts_sha256": sha256_file(self.prompts_path),
            "image_processor": self.image_transform.processor.to_dict(),
        }


@register_judge(
    "q16",
    help="Q16 (CLIP + the published prompt embeddings for inappropriate content, from a local file)",
    example=EXAMPLE,
    options=OPTIONS,
)
def load_q16(spec: str, device: str | None = None) -> Q16Judge:
    """``q16:OPTIONS`` -> :class:`Q16Judge` on ``device`` (auto: CUDA when available)."""
    return Q16Judge.from_spec(spec, resolve_device(device))
