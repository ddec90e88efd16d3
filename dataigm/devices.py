"""One device resolver for every command: ``auto`` picks CUDA when torch sees it, anything else is checked.

torch is imported inside the functions, so ``import dataigm`` stays light.
"""

from __future__ import annotations

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(device: str | None = "auto") -> str:
    """The device to run on: ``auto`` (or None) gives ``cuda`` when available, else ``cpu``.

    A named device must exist on this machine; otherwise a ``ValueError`` names it and the choices.
    """
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"--device {device!r} is not a device; valid: {DEVICE_CHOICES}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device!r}: torch sees no CUDA device on this machine; use --device auto or cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"--device {device!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1}); "
                "use --device auto or one of those"
            )
    elif parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"--device {device!r}: MPS is not available on this machine; use --device auto or cpu")
    elif parsed.type != "cpu":
        backend = getattr(torch, parsed.type, None)
        if backend is None or not backend.is_available():
            raise ValueError(f"--device {device!r} is not available here; valid: {DEVICE_CHOICES}")
    return device
