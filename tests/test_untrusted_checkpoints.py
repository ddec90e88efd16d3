"""Weights files a judge or detector reads (a timm judge's weights, an IGMU head, Q16 prompt embeddings, person
detector weights) come from other people: a pickle that needs code to load is named in one line and never run, and
torch's advice to load it with ``weights_only=False`` is not passed on."""

from pathlib import Path

import pytest
import torch
from helpers.models import save_untrained_judge


class _Touch:
    """A pickled object whose loading would create a file."""

    def __init__(self, path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _hooked(path: Path, marker: Path, tensors: dict) -> Path:
    torch.save({**tensors, "hook": _Touch(marker)}, path)
    return path


def _timm_judge(folder: Path, marker: Path):
    from detectors.judges import load_judge

    save_untrained_judge(folder, ("church",))
    (folder / "model.safetensors").unlink()
    weights = _hooked(folder / "pytorch_model.bin", marker, {"fc.weight": torch.ones(1, 2)})
    return weights, lambda: load_judge(f"local-dir:{folder}")


def _igmu_head(folder: Path, marker: Path):
    from detectors.judges.igmu import load_igmu_head

    head = _hooked(folder / "classifier_head.pth", marker, {"attention.0.weight": torch.ones(4, 512)})
    return head, lambda: load_igmu_head(head)


def _q16_prompts(folder: Path, marker: Path):
    from detectors.judges.q16 import read_q16_prompts

    prompts = _hooked(folder / "prompts.pt", marker, {"embeddings": torch.ones(2, 8)})
    return prompts, lambda: read_q16_prompts(prompts)


def _person_detector(folder: Path, marker: Path):
    from detectors.evaluation.person import PersonDetector

    weights = _hooked(folder / "detector.pth", marker, {"w": torch.ones(1)})
    return weights, lambda: PersonDetector("fasterrcnn_mobilenet_v3_large_320_fpn", str(weights), pretrained=False)


@pytest.mark.parametrize("loader", [_timm_judge, _igmu_head, _q16_prompts, _person_detector])
def test_a_weights_pickle_that_needs_code_is_named_in_one_line_and_never_run(tmp_path, loader):
    marker = tmp_path / "ran"
    folder = tmp_path / "files"
    folder.mkdir()
    path, load = loader(folder, marker)
    with pytest.raises(ValueError) as err:
        load()
    text = str(err.value)
    assert str(path) in text and "cannot be read safely: it is a pickle that needs code to load" in text, text
    assert "pathlib" in text and "\n" not in text and "weights_only=False" not in text
    assert not marker.exists()
