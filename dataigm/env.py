"""``dataigm env``: the versions and devices a bug report needs."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "dataigm",
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "timm",
    "datasets",
    "webdataset",
    "huggingface_hub",
)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _devices() -> str:
    try:
        import torch
    except ImportError:
        return "unknown (torch not installed)"
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return ", ".join(found)


def environment_report() -> dict[str, str]:
    """``{name: version}`` for python, the platform, our dependencies, and the devices torch sees."""
    report = {"python": platform.python_version(), "platform": platform.platform()}
    report.update({name: _version(name) for name in PACKAGES})
    report["devices"] = _devices()
    return report
