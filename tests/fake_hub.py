"""A user's Hugging Face setup, offline: a temporary ``HF_HOME`` with the hub's real token file
and cache layout, read by huggingface_hub's own functions; only ``model_info`` (the hub's online
answer, gated or not) is faked."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import RepositoryNotFoundError

ENVIRONMENT = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_OIDC_RESOURCE",
)


class FakeHub:
    """``HF_HOME`` in a temporary folder; huggingface_hub's constants re-read from the
    environment, as a process started with it would have them."""

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.monkeypatch = monkeypatch
        self.asked: list[str] = []  # the repo ids model_info was asked about
        self.gated: dict[str, bool | str] = {}
        for name in ENVIRONMENT:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_HOME", str(home))
        monkeypatch.setattr(huggingface_hub, "model_info", self._model_info)
        self.go_offline()

    def _reload(self) -> None:
        importlib.reload(constants)

    def go_offline(self) -> None:
        self.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        self._reload()

    def go_online(self, gated: dict[str, bool | str] | None = None) -> None:
        """The hub reachable; ``gated`` maps the repo ids it knows to its ``gated`` answer
        (False, "auto" or "manual"); any other id is not found."""
        self.gated = dict(gated or {})
        self.monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        self._reload()

    def login(self, token: str) -> None:
        """What `hf auth login` leaves: the token in ``HF_HOME/token``."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "token").write_text(token)

    def cache(self, repo_id: str, revision: str = "a" * 40) -> Path:
        """A model in the hub cache's layout: refs/main naming a snapshot with config.json."""
        repo = self.home / "hub" / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)
        return snapshot

    def _model_info(self, repo_id: str, *args, **kwargs):
        self.asked.append(repo_id)
        if constants.HF_HUB_OFFLINE:
            raise AssertionError(f"model_info({repo_id!r}) asked offline")
        if repo_id not in self.gated:
            # The HTTP client huggingface_hub's errors are made with (httpx, or httpx2 in 2.x).
            http = importlib.import_module(huggingface_hub.errors.Response.__module__.split(".")[0])
            url = f"https://huggingface.co/api/models/{repo_id}"
            response = http.Response(404, request=http.Request("GET", url))
            raise RepositoryNotFoundError(f"404 Client Error: {url}", response=response)
        return SimpleNamespace(id=repo_id, gated=self.gated[repo_id])

    def restore(self) -> None:
        self.monkeypatch.undo()
        self._reload()


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    hub = FakeHub(tmp_path / "hf_home", monkeypatch)
    yield hub
    hub.restore()
