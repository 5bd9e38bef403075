"""Any hub model, as the hub really behaves: the token from the environment or the hub's own
login, a token only for gated models, the local cache offline. No network: a temporary HF_HOME
with the hub's real token file and cache layout (tests/fake_hub.py); only model_info is faked."""

from __future__ import annotations

import pytest

from hle_reasoning import hub
from hle_reasoning.modeling.models import ModelAccessError, check_model_access, hf_token
from hle_reasoning.preflight import preflight_problems

QWEN = "Qwen/Qwen2.5-VL-3B-Instruct"  # ungated
LLAMA = "meta-llama/Llama-3.2-11B-Vision-Instruct"  # gated (manual approval)


def with_model(name: str) -> dict:
    return {"model": {"name_or_path": name, "device": "cpu"}}


def model_problems(name: str) -> list[str]:
    return preflight_problems(with_model(name), None, uses_model=True, uses_device=False)


def test_the_token_comes_from_the_environment_or_the_hubs_login(fake_hub, monkeypatch):
    assert hub.token() is None and hf_token() is None
    fake_hub.login("hf_saved_by_login")
    assert hub.token() == hf_token() == "hf_saved_by_login"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert hf_token() == "hf_from_env"  # the environment first, as huggingface_hub does


def test_an_ungated_model_needs_no_token(fake_hub):
    fake_hub.go_online({QWEN: False})
    check_model_access(QWEN)
    assert model_problems(QWEN) == []
    assert fake_hub.asked == [QWEN, QWEN]


def test_a_gated_model_needs_a_token_and_logging_in_gives_one(fake_hub):
    fake_hub.go_online({LLAMA: "manual"})
    with pytest.raises(ModelAccessError) as error:
        check_model_access(LLAMA)
    message = str(error.value)
    assert f"gated hub model {LLAMA!r}" in message
    assert f"https://huggingface.co/{LLAMA}" in message and "`hf auth login`" in message
    (problem,) = model_problems(LLAMA)
    assert problem in message
    fake_hub.login("hf_saved_by_login")
    asked = len(fake_hub.asked)
    check_model_access(LLAMA)
    assert model_problems(LLAMA) == []
    assert len(fake_hub.asked) == asked  # with a token, the download says whether it has access


def test_offline_a_cached_model_is_used_and_one_not_cached_is_refused(fake_hub):
    fake_hub.cache(QWEN)
    check_model_access(QWEN)  # HF_HUB_OFFLINE=1 and no token: the cache is enough
    assert model_problems(QWEN) == []
    with pytest.raises(ModelAccessError) as error:
        check_model_access(LLAMA)
    message = str(error.value)
    assert (
        f"HF_HUB_OFFLINE=1 and the hub model {LLAMA!r} is not in the local Hugging Face cache"
        in message
    )
    assert str(fake_hub.home / "hub") in message
    assert model_problems(LLAMA) == [message.split(" Without a GPU", maxsplit=1)[0]]
    assert fake_hub.asked == []  # offline, the hub is never asked


def test_a_snapshot_without_its_ref_is_not_a_cached_model(fake_hub):
    snapshot = fake_hub.cache(QWEN)
    (snapshot.parent.parent / "refs" / "main").unlink()  # an interrupted download
    assert hub.cached_model(QWEN) is None
    assert model_problems(QWEN)


def test_an_unknown_model_and_an_unreachable_hub_are_named(fake_hub, monkeypatch):
    fake_hub.go_online()
    (problem,) = model_problems("nobody/no-such-model")
    assert "'nobody/no-such-model' is not a model on the Hugging Face hub" in problem

    def unreachable(repo_id, *args, **kwargs):
        raise ConnectionError("[Errno 101] Network is unreachable")

    monkeypatch.setattr("huggingface_hub.model_info", unreachable)
    (problem,) = model_problems(QWEN)
    assert f"the Hugging Face hub cannot be reached to fetch {QWEN!r}" in problem
    assert "Network is unreachable" in problem
    fake_hub.cache(QWEN)
    assert model_problems(QWEN) == []  # what the cache holds still loads


def test_the_hle_download_takes_the_login_token(fake_hub, monkeypatch):
    from hle_reasoning.hle.data.schema import HLEDataError, read_hub

    with pytest.raises(HLEDataError, match="`hf auth login`"):
        read_hub("cais/hle")
    fake_hub.login("hf_saved_by_login")
    seen = {}

    def load_dataset(dataset_id, split, token):  # the download itself needs the network
        seen["token"] = token
        raise ConnectionError("offline")

    monkeypatch.setattr("datasets.load_dataset", load_dataset)
    with pytest.raises(HLEDataError, match="could not load split 'test'"):
        read_hub("cais/hle")
    assert seen == {"token": "hf_saved_by_login"}
