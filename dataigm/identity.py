"""Content identity: what a file, a folder, a JSON value or a model spec's weights are, by their bytes.

Every cache key, job identity and checksum of the package names content through this module, so that the same
weights get the same identity everywhere (generation jobs, the evaluation cache, attack checksums, cards):

* a file: the sha256 of its bytes (:func:`dataigm.files.sha256_file`);
* a folder: the sha256 of the JSON list of its files' ``[relative path, sha256]``, sorted, hidden entries
  (``.cache``, ``.git``...) left out: where the folder lives does not count, what is in it does;
* a value: the sha256 of its JSON with sorted keys (:func:`json_sha256`);
* a model spec: :func:`weights_identity`, the identity of every weights reference it loads;
* weights already loaded: :func:`state_dict_sha256`, of the tensors' names, dtypes, shapes and bytes.

Hashing gigabytes of weights at every run would cost minutes, so :class:`DigestCache` remembers each file's
digest under its path and stat entry (size, modification and change time in nanoseconds, inode), as git's index
does: a file rewritten, replaced or moved gets a new entry and is read again; an unchanged file is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .files import atomic_write_json, sha256_file
from .manifest import MODEL_WEIGHT_KEYS

# A pipeline folder's component that the generation never loads (it runs with the safety checker off).
_NEVER_LOADED = ("safety_checker",)
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def json_sha256(value: object, default=str) -> str:
    """sha256 (hex) of ``value`` as JSON with sorted keys; ``default`` writes what JSON cannot."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=default).encode()).hexdigest()


class DigestCache:
    """sha256 of files and folders by content, remembered per file by its path and stat entry.

    Args:
        memo: a JSON file that keeps the digests across runs (e.g. ``<out>/cache/digests.json``); None keeps
            them for this process only.
    """

    def __init__(self, memo: str | os.PathLike | None = None):
        self.memo_path = Path(memo) if memo is not None else None
        self._memo: dict = {}
        if self.memo_path is not None and self.memo_path.is_file():
            try:
                self._memo = json.loads(self.memo_path.read_text(encoding="utf-8"))
            except ValueError:  # a damaged memo costs one reading of the files, nothing else
                self._memo = {}
        self._dirty = False

    def file(self, path: str | os.PathLike) -> str:
        """sha256 of one file's bytes."""
        path = Path(path).resolve()
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        known = self._memo.get(str(path))
        if known and known[0] == stamp:
            return known[1]
        digest = sha256_file(path)
        self._memo[str(path)] = [stamp, digest]
        self._dirty = True
        return digest

    def path(self, path: str | os.PathLike, exclude: tuple[str, ...] = ()) -> str:
        """sha256 of a file, or of a folder's files (relative names and contents; hidden entries and the
        top-level entries named in ``exclude`` left out)."""
        path = Path(path)
        if path.is_file():
            return self.file(path)
        entries = []
        for p in path.rglob("*"):
            parts = p.relative_to(path).parts
            if p.is_file() and parts[0] not in exclude and not any(part.startswith(".") for part in parts):
                entries.append((p.relative_to(path).as_posix(), self.file(p)))
        return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()

    def maybe_path(self, value: str | None) -> str | None:
        """The content digest of ``value`` when it names a local file or folder, else None."""
        if value is None or not isinstance(value, str) or not value or not Path(value).exists():
            return None
        return self.path(value)

    def save(self) -> None:
        """Write the memo file (when there is one and it changed)."""
        if self._dirty and self.memo_path is not None:
            atomic_write_json(self.memo_path, dict(sorted(self._memo.items())))
            self._dirty = False


_PROCESS = DigestCache()  # for callers without a memo file of their own


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered for this process while the file is unchanged."""
    return _PROCESS.file(path)


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor, in name order: weights as loaded."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def hub_commit(repo: str, revision: str | None = None) -> str | None:
    """The commit a Hub repository resolves to without the network: ``revision`` when it is a commit, else the
    commit of the local Hugging Face cache's snapshot for it (what an offline load uses); None when unknown."""
    if revision is not None and _COMMIT_RE.match(revision):
        return revision
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, revision=revision, local_files_only=True)).name
    except Exception:  # not in the cache, not a repo id, or no huggingface_hub: the commit is unknown
        return None


def _loaded_parts(spec: Mapping) -> dict[str, str]:
    """The weights references of a spec that loading reads: ``pipeline`` replaces ``base``; a toy has none."""
    base = str(spec.get("base") or "")
    if base == "toy" or base.startswith("toy:"):
        return {}
    refs = {k: str(spec[k]) for k in MODEL_WEIGHT_KEYS if spec.get(k)}
    if "pipeline" in refs:
        refs.pop("base", None)
    return refs


def weights_identity(spec: Mapping, cache: DigestCache | None = None) -> dict[str, dict]:
    """The identity of every weights file or folder a model spec loads, by key of :data:`MODEL_WEIGHT_KEYS`.

    * a local file or folder: ``{"sha256": ...}`` by content (:class:`DigestCache`). The base pipeline's folder
      leaves out the components that a part given as a folder or Hub id replaces whole (a part given as a
      state-dict file may be partial, so the base's component stays in), and the safety checker, never loaded;
    * a Hub id (``org/repo``, or ``org/repo/subfolder`` for a part): ``{"hub": ref, "commit": ...}``, the commit
      pinned by ``revision`` or found in the local Hugging Face cache, None when the model is not downloaded
      yet. The commit names the files (the Hub stores them by content), so the files are not read again.

    Args:
        spec: a model spec as plain data (:meth:`generation.spec.ModelSpec.to_dict`, or a job's recorded one).
        cache: the digest cache to use; default: one per process.
    """
    cache = cache or _PROCESS
    refs = _loaded_parts(spec)
    replaced = tuple(k for k, ref in refs.items() if k not in ("base", "pipeline", "lora") and not Path(ref).is_file())
    out: dict[str, dict] = {}
    for key, ref in refs.items():
        path = Path(ref)
        if path.is_file():
            out[key] = {"sha256": cache.file(path)}
        elif path.is_dir():
            exclude = (*replaced, *_NEVER_LOADED) if key in ("base", "pipeline") else ()
            out[key] = {"sha256": cache.path(path, exclude)}
        else:
            repo = "/".join(ref.split("/")[:2])
            revision = spec.get("revision") if key in ("base", "pipeline") else None
            out[key] = {"hub": ref, "commit": hub_commit(repo, revision)}
    return out


def changed_parts(before: Mapping, now: Mapping) -> list[str]:
    """The keys whose identity differs between two :func:`weights_identity` results, in
    :data:`MODEL_WEIGHT_KEYS` order. A Hub part whose commit is unknown on either side counts as unchanged
    (it cannot be told), and so does a part added or removed (the spec changed, which is other work)."""
    changed = []
    for key in MODEL_WEIGHT_KEYS:
        old, new = before.get(key), now.get(key)
        if old is None or new is None or old == new:
            continue
        if "hub" in old and "hub" in new and old["hub"] == new["hub"] and None in (old["commit"], new["commit"]):
            continue
        changed.append(key)
    return changed


def describe(identity: Mapping | None) -> str:
    """One part's identity, short: ``sha256 0123456789ab`` or ``org/repo@0123456789ab``."""
    if not identity:
        return "none"
    if "sha256" in identity:
        return f"sha256 {identity['sha256'][:12]}"
    commit = identity.get("commit")
    return f"{identity['hub']}@{commit[:12] if commit else 'not downloaded'}"
