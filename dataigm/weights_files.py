"""Weights files other people send (UNet checkpoints, a judge's pretrained weights): read without running code.

Pickled files are read only by ``torch.load(weights_only=True)``. When it refuses one, its message suggests
``weights_only=False``, which would run whatever the file holds; that message is not passed on. Instead the file
itself says what it is: its pickle opcodes are listed by :mod:`pickletools` (which parses, never runs) to tell a
file that is no checkpoint at all from a pickle that needs code (the functions or classes it names) to load.
torch is imported inside the functions: ``import dataigm`` stays light.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["check_weights_readable", "refusal_reason", "torch_load_safely"]

# Globals of torch's own pickles (tensor rebuilds, storages, the state dict's OrderedDict): not "code" to a user.
_TORCH_GLOBALS = ("torch.", "collections.OrderedDict")
_LEGACY_PICKLES = 4  # torch's pre-zip format: magic number, protocol, system info, then the objects


class _NotAPickle(Exception):
    pass


def _pickle_streams(path: Path) -> list[io.BufferedIOBase]:
    """The pickle(s) of a checkpoint: ``data.pkl`` of torch's zip format, or the file itself."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"), None)
                if member is None:
                    raise _NotAPickle
                return [io.BytesIO(archive.read(member))]
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise _NotAPickle from err
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) < 2 or head[0] != pickle.PROTO[0] or not 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        raise _NotAPickle  # every pickle torch writes starts with PROTO 2 or later
    return [open(path, "rb")]  # noqa: SIM115 (closed by the caller)


def _globals(path: Path) -> list[str]:
    """The ``module.name`` of every global the pickle(s) of ``path`` would import and call."""
    names: list[str] = []
    streams = _pickle_streams(path)
    try:
        for stream in streams:
            for number in range(_LEGACY_PICKLES):
                # STACK_GLOBAL takes module and name from the stack: the strings pushed, directly or from the memo
                strings: list[str] = []
                memo: dict[int, str | None] = {}
                last: str | None = None
                try:
                    for opcode, arg, _ in pickletools.genops(stream):
                        name = opcode.name
                        if name in ("GLOBAL", "INST"):  # protocols 0-2 name Python 3's builtins __builtin__
                            names.append(str(arg).replace(" ", ".").replace("__builtin__.", "builtins."))
                        elif name == "STACK_GLOBAL":
                            names.append(".".join(strings[-2:]) if len(strings) >= 2 else "a global")
                        elif name == "MEMOIZE":
                            memo[len(memo)] = last
                            continue
                        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                            memo[int(arg)] = last
                            continue
                        elif name in ("GET", "BINGET", "LONG_BINGET") and isinstance(memo.get(int(arg)), str):
                            strings.append(memo[int(arg)])
                            last = memo[int(arg)]
                            continue
                        elif isinstance(arg, str) and ("STRING" in name or "UNICODE" in name):
                            strings.append(str(arg))
                            last = str(arg)
                            continue
                        last = None
                except (ValueError, EOFError, UnicodeDecodeError) as err:
                    if number == 0:
                        raise _NotAPickle from err
                    break  # after the first pickle: the end of the file, or the raw tensor bytes
                if stream.read(1) == b"":
                    break
                stream.seek(-1, io.SEEK_CUR)
    finally:
        for stream in streams:
            stream.close()
    return names


def refusal_reason(path: str | Path) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in words, without running anything in it."""
    try:
        names = _globals(Path(path))
    except (_NotAPickle, OSError):
        return "it is not a checkpoint (neither a safetensors file nor a PyTorch state dict)"
    code = sorted({n for n in names if not n.startswith(_TORCH_GLOBALS)})
    if code:
        listed = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
        return f"it is a pickle that needs code to load ({listed}), which is never run; only plain tensors are read"
    return "it is not a checkpoint of plain tensors"


def torch_load_safely(path: str | Path, label: str, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU (``mmap``: the tensors are mapped, not read; a pre-zip
    file is read whole); a refused file raises one line.

    Raises:
        ValueError: ``"<label> cannot be read safely: <what it is>"`` (:func:`refusal_reason`).
    """
    import torch

    try:
        if mmap:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError):
        raise ValueError(f"{label} cannot be read safely: {refusal_reason(path)}") from None


def check_weights_readable(path: str | Path, label: str) -> None:
    """Open a weights file as it will be loaded, without reading its tensors: a safetensors header is parsed, a
    pickle mapped by :func:`torch_load_safely`.

    Raises:
        ValueError: one line naming ``label`` and what the file is.
    """
    if str(path).endswith(".safetensors"):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{label} is not a readable safetensors file ({err})") from None
        return
    torch_load_safely(path, label, mmap=True)
