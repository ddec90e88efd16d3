"""The one fake Hugging Face Hub of the tests: an in-memory store of repositories plus a record of every call.

``FakeHub().install(monkeypatch)`` replaces ``huggingface_hub.HfApi`` and the ``HfApi`` that timm's
``push_to_hf_hub`` uses, so our code and timm's talk to the same fake; ``hub.client()`` is an ``HfApi``
to pass as ``api=``. Uploads copy the real files (after the real ``allow_patterns``/``ignore_patterns``
filter), commits to a pull request land on ``refs/pr/N``. ``FakeHub(large_folder=True)`` gives the client
``upload_large_folder`` (huggingface_hub versions that have it); ``fail_uploads`` makes that many uploads
raise ``ConnectionError`` after being recorded (an interrupted upload).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitInfo, RepoUrl
from huggingface_hub.utils import filter_repo_objects

MAIN = "main"


class FakeHub:
    """Repositories ``{(repo_type, repo_id): {revision: {path: bytes}}}`` and the calls ``[(name, kwargs)]``."""

    def __init__(self, large_folder: bool = False, fail_uploads: int = 0):
        self.repos: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}
        self.calls: list[tuple[str, dict]] = []
        self.tokens: list = []  # the token each HfApi was made with (None: huggingface_hub's own sources)
        self.large_folder = large_folder
        self.fail_uploads = fail_uploads

    def client(self, token=None, library_name=None, library_version=None, **kwargs) -> FakeHfApi:
        """An ``HfApi`` talking to this hub (the signature of ``HfApi(...)``)."""
        self.tokens.append(token)
        return (FakeHfApiWithLargeFolder if self.large_folder else FakeHfApi)(self, library_name)

    def install(self, monkeypatch) -> FakeHub:
        """Make every ``HfApi()`` of huggingface_hub and timm a client of this hub."""
        import huggingface_hub
        import timm.models._hub

        monkeypatch.setattr(huggingface_hub, "HfApi", self.client)
        monkeypatch.setattr(timm.models._hub, "HfApi", self.client)
        return self

    def seed(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model") -> None:
        """A repository that already holds ``files`` on main."""
        self.repos.setdefault((repo_type, repo_id), {MAIN: {}})[MAIN].update(files)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = MAIN) -> dict[str, bytes]:
        """The files of a repository at ``revision``: ``{path: bytes}``."""
        return self.repos[(repo_type, repo_id)][revision]

    def calls_of(self, call: str) -> list[dict]:
        """The keyword arguments of every call named ``call``."""
        return [kwargs for name, kwargs in self.calls if name == call]

    def names(self) -> list[str]:
        """The name of every call, in order."""
        return [name for name, _ in self.calls]


class FakeHfApi:
    """The part of ``huggingface_hub.HfApi`` our pushes and timm's ``push_to_hf_hub`` use."""

    def __init__(self, hub: FakeHub, library_name: str | None = None):
        self.hub = hub
        self.library_name = library_name

    def _repo(self, repo_id: str, repo_type: str | None) -> dict[str, dict[str, bytes]]:
        key = (repo_type or "model", repo_id)
        if key not in self.hub.repos:
            raise KeyError(f"no {key[0]} repository {repo_id}")
        return self.hub.repos[key]

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs) -> RepoUrl:
        self.hub.calls.append(
            ("create_repo", {"repo_id": repo_id, "repo_type": repo_type, "private": private, "exist_ok": exist_ok})
        )
        key = (repo_type or "model", repo_id)
        if key in self.hub.repos and not exist_ok:
            raise FileExistsError(repo_id)
        self.hub.repos.setdefault(key, {MAIN: {}})
        prefix = "" if key[0] == "model" else f"{key[0]}s/"
        return RepoUrl(f"https://huggingface.co/{prefix}{repo_id}")

    def create_branch(self, repo_id, *, branch, repo_type=None, exist_ok=False, **kwargs) -> None:
        self.hub.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch, "repo_type": repo_type}))
        repo = self._repo(repo_id, repo_type)
        if branch in repo and not exist_ok:
            raise FileExistsError(branch)
        repo.setdefault(branch, dict(repo[MAIN]))

    def repo_exists(self, repo_id, *, repo_type=None, **kwargs) -> bool:
        self.hub.calls.append(("repo_exists", {"repo_id": repo_id, "repo_type": repo_type}))
        return (repo_type or "model", repo_id) in self.hub.repos

    def file_exists(self, repo_id, filename, *, repo_type=None, revision=None, **kwargs) -> bool:
        self.hub.calls.append(
            ("file_exists", {"repo_id": repo_id, "filename": filename, "repo_type": repo_type, "revision": revision})
        )
        return filename in self._repo(repo_id, repo_type).get(revision or MAIN, {})

    def list_repo_files(self, repo_id, *, repo_type=None, revision=None, **kwargs) -> list[str]:
        self.hub.calls.append(("list_repo_files", {"repo_id": repo_id, "repo_type": repo_type, "revision": revision}))
        return sorted(self._repo(repo_id, repo_type).get(revision or MAIN, {}))

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, revision=None, **kwargs):
        """Deletions only (what our code commits this way); any other operation is a test bug."""
        from huggingface_hub import CommitOperationDelete

        files = self._repo(repo_id, repo_type).setdefault(revision or MAIN, {})
        for op in operations:
            assert isinstance(op, CommitOperationDelete), op
            files.pop(op.path_in_repo)
        paths = sorted(op.path_in_repo for op in operations)
        self.hub.calls.append(("create_commit", {"repo_id": repo_id, "deleted": paths, "revision": revision}))
        oid = f"{len(self.hub.calls):040x}"
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}",
            commit_message=commit_message,
            commit_description="",
            oid=oid,
        )

    def _upload(self, call: str, folder_path, path_in_repo, allow_patterns, ignore_patterns, **record) -> dict:
        """Record the call, fail if asked to, and return the chosen files ``{path in repo: bytes}``."""
        folder = Path(folder_path)
        local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        chosen = list(filter_repo_objects(local, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        prefix = (path_in_repo or "").strip("/")
        uploaded = {(f"{prefix}/{name}" if prefix else name): (folder / name).read_bytes() for name in chosen}
        record |= {"folder_path": str(folder_path), "ignore_patterns": ignore_patterns, "files": sorted(uploaded)}
        self.hub.calls.append((call, record | {"library_name": self.library_name}))
        if self.hub.fail_uploads:
            self.hub.fail_uploads -= 1
            raise ConnectionError("connection reset during upload")
        return uploaded

    def upload_folder(
        self,
        *,
        repo_id,
        folder_path,
        path_in_repo=None,
        commit_message=None,
        repo_type=None,
        revision=None,
        create_pr=False,
        allow_patterns=None,
        ignore_patterns=None,
        **kwargs,
    ) -> CommitInfo:
        uploaded = self._upload(
            "upload_folder",
            folder_path,
            path_in_repo,
            allow_patterns,
            ignore_patterns,
            repo_id=repo_id,
            repo_type=repo_type,
            revision=revision,
            create_pr=bool(create_pr),
            commit_message=commit_message,
        )
        repo = self._repo(repo_id, repo_type)
        base = revision or MAIN
        pr_url = None
        if create_pr:
            number = 1 + sum(name.startswith("refs/pr/") for name in repo)
            base = f"refs/pr/{number}"
            repo[base] = dict(repo[revision or MAIN])
            pr_url = f"https://huggingface.co/{repo_id}/discussions/{number}"
        repo.setdefault(base, {}).update(uploaded)
        oid = f"{len(self.hub.calls):040x}"
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}",
            commit_message=commit_message or "",
            commit_description="",
            oid=oid,
            pr_url=pr_url,
        )


class FakeHfApiWithLargeFolder(FakeHfApi):
    """An ``HfApi`` of a huggingface_hub version with ``upload_large_folder`` (several commits, resumable)."""

    def upload_large_folder(
        self,
        repo_id,
        folder_path,
        *,
        repo_type=None,
        revision=None,
        private=None,
        allow_patterns=None,
        ignore_patterns=None,
        **kwargs,
    ) -> None:
        if repo_type is None:  # as in huggingface_hub: no default, the caller must say
            raise ValueError("Please provide a `repo_type`")
        uploaded = self._upload(
            "upload_large_folder",
            folder_path,
            None,
            allow_patterns,
            ignore_patterns,
            repo_id=repo_id,
            repo_type=repo_type,
            revision=revision,
            private=private,
        )
        self.hub.repos.setdefault((repo_type, repo_id), {MAIN: {}}).setdefault(revision or MAIN, {}).update(uploaded)
