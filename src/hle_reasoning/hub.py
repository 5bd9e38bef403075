"""The Hugging Face hub as it really behaves, through huggingface_hub's public API.

* The token is ``huggingface_hub.get_token()``: ``HF_TOKEN`` (or ``HUGGING_FACE_HUB_TOKEN``), else
  the token ``hf auth login`` (``huggingface-cli login``) saved under ``HF_HOME``.
* A hub model needs a token only when the hub says it is gated (``model_info(...).gated``):
  an ungated model (e.g. Qwen/Qwen2.5-VL-3B-Instruct) loads without one. With a token, the
  download itself says whether the token has access.
* With ``HF_HUB_OFFLINE=1`` (as huggingface_hub read it when imported) nothing is asked of the
  hub: a model in the local cache (``HF_HUB_CACHE``, by default ``HF_HOME/hub``) is used, one that
  is not is refused, naming it and the cache.
"""

from __future__ import annotations

LOGIN = "`hf auth login` (or `export HF_TOKEN=hf_...`)"


def token() -> str | None:
    """The Hugging Face token from the environment or the hub's own login, or None."""
    from huggingface_hub import get_token

    return get_token()


def offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1`` when it was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> str:
    """The local hub cache huggingface_hub reads and writes."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_model(repo_id: str) -> str | None:
    """The cached ``config.json`` of ``repo_id``'s main revision, or None when it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, "config.json")
    return path if isinstance(path, str) else None


def model_access_problem(repo_id: str) -> str | None:
    """Why the hub model ``repo_id`` cannot be loaded as things stand, or None when it can."""
    if offline():
        if cached_model(repo_id):
            return None
        return (
            f"HF_HUB_OFFLINE=1 and the hub model {repo_id!r} is not in the local Hugging Face cache "
            f"({cache_dir()}): download it once with the hub reachable (`hf download {repo_id}`), "
            "or unset HF_HUB_OFFLINE, or point model.name_or_path at a local save_pretrained "
            "directory."
        )
    if token():
        return None  # the download says whether this token has access
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = huggingface_hub.model_info(repo_id)
    except RepositoryNotFoundError:
        return (
            f"model.name_or_path {repo_id!r} is not a model on the Hugging Face hub, or it is "
            f"private and no Hugging Face token is set: check the id, or {LOGIN} with a token "
            "that can read it."
        )
    except Exception as error:  # the hub client raises many unrelated types when unreachable
        if cached_model(repo_id):
            return None
        return (
            f"the Hugging Face hub cannot be reached to fetch {repo_id!r} ({type(error).__name__}: "
            f"{error}): check the network, or set HF_HUB_OFFLINE=1 with the model in the local "
            f"cache ({cache_dir()})."
        )
    if info.gated:
        return (
            f"model.name_or_path is the gated hub model {repo_id!r} but no Hugging Face token is "
            f"set (HF_TOKEN is not set and `hf auth login` was not run): request access at "
            f"https://huggingface.co/{repo_id}, then {LOGIN}, and run again."
        )
    return None
