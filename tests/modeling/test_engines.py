"""The managed serving engines: SGLang's and vLLM's command lines as command lines (no GPU here),
the refusals, and the whole lifecycle of a real ``transformers serve`` on the tiny Mllama (CPU):
healthy, answered, and stopped with no process left after success, failure, an early exit, a
start that never becomes healthy, SIGINT and SIGTERM (checked by pid)."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hle_reasoning.config import (
    AnsweringConfig,
    ConfigError,
    GenerationConfig,
    ModelConfig,
    parse_or_raise,
)
from hle_reasoning.datasets.endpoints import AnswerEndpoints
from hle_reasoning.hle.data.prompts import DEFAULT_CHAT_TEMPLATE_DATE, render_chat
from hle_reasoning.modeling import engine_checks, engines
from hle_reasoning.modeling.engines import EngineError, ManagedEngine, engine_command
from hle_reasoning.modeling.openai_backend import Endpoint, EndpointAnswerer, request_messages
from hle_reasoning.pipelines.evaluation import backends
from hle_reasoning.preflight import preflight_problems

PYTHON = sys.executable
BIN = Path(sys.executable).parent


def test_sglang_serves_llama_vision_with_its_chat_template_on_the_given_port():
    command = engine_command(
        "sglang",
        "/models/merged",
        30123,
        dtype="bfloat16",
        mllama=True,
        options={"mem_fraction_static": 0.8, "enable_metrics": True, "log_requests": False},
    )
    assert command == [
        PYTHON,
        "-m",
        "sglang.launch_server",
        "--model-path",
        "/models/merged",
        "--host",
        "127.0.0.1",
        "--port",
        "30123",
        "--dtype",
        "bfloat16",
        "--chat-template",
        "llama_3_vision",
        "--mem-fraction-static",
        "0.8",
        "--enable-metrics",
    ]
    # Another family: SGLang's own template from the checkpoint.
    assert "--chat-template" not in engine_command("sglang", "m", 1, dtype="bfloat16")


def test_vllm_and_transformers_serve_command_lines_and_an_option_replacing_the_projects():
    vllm = engine_command(
        "vllm",
        "/m",
        8001,
        dtype="bfloat16",
        options={"dtype": "float16", "tensor-parallel-size": 2},
    )
    assert vllm[1:] == [
        "serve",
        "/m",
        "--host",
        "127.0.0.1",
        "--port",
        "8001",
        "--dtype",
        "float16",
        "--tensor-parallel-size",
        "2",
    ]
    assert Path(vllm[0]).name == "vllm"
    served = engine_command("transformers", "/m", 8002, dtype="float32", device="cpu")
    assert served[1:] == [
        "serve",
        "/m",
        "--host",
        "127.0.0.1",
        "--port",
        "8002",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
    assert served[0] == str(BIN / "transformers")


OPTION_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}([_-][a-z0-9]{1,6}){0,2}", fullmatch=True)
# A text value starting with "-" is left out: the engines' own argument parsers read it as a flag
# whatever the project passes (found by this test with {"a": "--", "h": "--"}, where "--" then
# also looked like a flag here).
OPTION_VALUES = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(-5, 10**6),
    st.text("abc/._-", min_size=1, max_size=8).filter(lambda v: not v.startswith("-")),
)


@settings(max_examples=200, deadline=None)
@given(
    engine=st.sampled_from(sorted(engines.ENGINES)),
    options=st.dictionaries(OPTION_NAMES, OPTION_VALUES, max_size=6),
    port=st.integers(1, 65535),
)
def test_any_pass_through_options_give_one_flag_each_after_the_engines_own(engine, options, port):
    command = engine_command(engine, "/m", port, dtype="bfloat16", mllama=True, options=options)
    assert all(isinstance(part, str) for part in command)
    flags = [part for part in command if part.startswith("--")]
    assert len(flags) == len(set(flags))  # each option once, whatever its spelling
    wanted = {name.replace("_", "-"): value for name, value in options.items()}
    for name, value in wanted.items():
        if value is None or value is False:
            assert f"--{name}" not in flags
        elif value is True:
            assert f"--{name}" in flags
        else:
            assert command[command.index(f"--{name}") + 1] == str(value)
    if "port" not in wanted:
        assert command[command.index("--port") + 1] == str(port)
    if "host" not in wanted:
        assert command[command.index("--host") + 1] == "127.0.0.1"


def test_refusals_name_the_parameter_and_what_to_use_instead():
    where = "evaluation.answering.baseline"
    (vllm_mllama, *rest) = engine_checks.engine_refusals("vllm", where, mllama=True, gpu=True)
    assert vllm_mllama.startswith(f"{where}.engine is vllm, which cannot serve Llama 3.2 Vision")
    assert "engine: sglang" in vllm_mllama
    no_gpu = engine_checks.engine_refusals("sglang", where, mllama=True, gpu=False)
    assert any("needs a CUDA GPU" in p and "engine: transformers" in p for p in no_gpu)
    # Not installed here: SGLang and vLLM (real lookups in this environment).
    for engine in ("sglang", "vllm"):
        missing = engine_checks.engine_refusals(engine, where, mllama=False, gpu=True)
        assert missing == [
            f"{where}.engine is {engine} but {engine} is not installed in this environment: "
            f"`{engines.ENGINES[engine].install}`, or use engine: transformers or backend: local"
        ]
    assert engine_checks.engine_refusals("transformers", where, mllama=True, gpu=False) == []
    assert "engine is not set" in engine_checks.engine_refusals(None, where, mllama=True)[0]


def test_an_engine_option_the_engine_would_read_as_a_flag_is_refused_naming_its_key():
    where = "evaluation.answering.baseline"
    options = {
        "chat_template": "--jinja",
        "served_model_name": "-",
        "tp_size": 2,
        "seed": -1,  # a number: the engines' parsers read it as one
        "enable_metrics": True,
        "--log-level": "info",
        "tokenizer": "./-tok",
    }
    assert engine_checks.engine_option_problems(options, where) == [
        f"{where}.engine_options.chat_template is '--jinja', which starts with '-': the engine's "
        "argument parser would read it as an option of its own, not as the value of "
        "--chat-template; pass a value that does not start with '-' (a path as ./--jinja)",
        f"{where}.engine_options.served_model_name is '-', which starts with '-': the engine's "
        "argument parser would read it as an option of its own, not as the value of "
        "--served-model-name; pass a value that does not start with '-' (a path as ./-)",
        f"{where}.engine_options.--log-level: write the option's name without its dashes "
        "('log-level'); the project adds them",
    ]
    assert engine_checks.engine_option_problems({"tp_size": 2, "x": "y"}, where) == []
    assert engine_checks.engine_option_problems(None, where) == []


def test_the_answering_block_takes_an_engine_and_its_options():
    block = parse_or_raise(
        AnsweringConfig,
        {"backend": "engine", "engine": "sglang", "engine_options": {"tp_size": 2, "x": "y"}},
        "evaluation.answering.baseline",
    )
    assert (block.backend, block.engine, block.engine_options) == (
        "engine",
        "sglang",
        {"tp_size": 2, "x": "y"},
    )
    with pytest.raises(ConfigError, match=r"evaluation.answering.baseline.engine is 'tgi'"):
        parse_or_raise(
            AnsweringConfig, {"backend": "engine", "engine": "tgi"}, "evaluation.answering.baseline"
        )


def _gone(pid: int) -> bool:
    """No live process ``pid`` (a zombie child of ours counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _engine(tiny_dir: Path, tmp_path: Path, **kwargs) -> ManagedEngine:
    return ManagedEngine(
        engine="transformers",
        model=str(tiny_dir),
        log_path=tmp_path / "engine.log",
        dtype="float32",
        device="cpu",
        **{"start_timeout_s": 180, **kwargs},
    )


QUESTION = pd.DataFrame({"id": ["q1"], "question": ["What is 2 + 2?"], "image": [""]})


@pytest.mark.slow
def test_an_engine_answers_and_is_stopped_on_success(tiny_dir, tmp_path):
    started = time.perf_counter()
    with _engine(tiny_dir, tmp_path) as engine:
        healthy_s = time.perf_counter() - started
        pid = engine.process.pid
        answerer = EndpointAnswerer(
            Endpoint(base_url=engine.base_url, model=engine.model),
            GenerationConfig(max_new_tokens=8),
            AnsweringConfig(backend="openai", max_retries=0),
        )
        (answer,) = list(answerer.answer_all(QUESTION, progress=False))
        assert answer.loc[0, "response_tokens"] == 8
        # Issue 28: the served prompt's date is the one sent (transformers serve hands the
        # request's chat_template_kwargs to the template): the served prompt's length is the
        # template's rendering, with that date, of what the server gives it. transformers serve
        # 5.24 gives it every message as a list of text parts, so the released template, which
        # writes the system message with `|trim`, writes that list's repr (not the in-process
        # prompt: reported separately); hence the parts below.
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(tiny_dir)
        as_parts = [
            {**m, "content": [{"type": "text", "text": m["content"]}]}
            if isinstance(m["content"], str)
            else m
            for m in request_messages(QUESTION.question[0], "")
        ]

        def prompt_tokens(date: str) -> tuple[int, int]:
            served = EndpointAnswerer(
                Endpoint(base_url=engine.base_url, model=engine.model),
                GenerationConfig(max_new_tokens=1),
                AnsweringConfig(backend="openai", max_retries=0),
                chat_template_date=date,
            )
            (record,) = list(served.answer_all(QUESTION, progress=False))
            text = render_chat(processor, as_parts, date)
            local = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
            return int(record.loc[0, "prompt_tokens"]), local

        served, local = prompt_tokens(DEFAULT_CHAT_TEMPLATE_DATE)
        assert served == local
        # Issue 30: so the served prompt is not the in-process one: it differs by the list's
        # text in place of the system prompt (104 tokens against 88). No server flag or request
        # field avoids it (the preflight warns: backends.system_message_warning). When this
        # fails, transformers serve writes the in-process prompt: drop that warning.
        messages = request_messages(QUESTION.question[0], "")
        system = messages[0]["content"]
        in_process = render_chat(processor, messages, DEFAULT_CHAT_TEMPLATE_DATE)
        as_list = in_process.replace(system, repr([{"type": "text", "text": system}]))
        assert render_chat(processor, as_parts, DEFAULT_CHAT_TEMPLATE_DATE) == as_list
        in_process_tokens = len(
            processor.tokenizer(in_process, add_special_tokens=False)["input_ids"]
        )
        assert served > in_process_tokens, "transformers serve now writes the in-process prompt"
        # The system prompt as a first user turn is written part by part: as in-process.
        as_user = EndpointAnswerer(
            Endpoint(base_url=engine.base_url, model=engine.model),
            GenerationConfig(max_new_tokens=1, system_role="user"),
            AnsweringConfig(backend="openai", max_retries=0),
            chat_template_date=DEFAULT_CHAT_TEMPLATE_DATE,
        )
        (record,) = list(as_user.answer_all(QUESTION, progress=False))
        user_turn = render_chat(
            processor,
            request_messages(QUESTION.question[0], "", "user"),
            DEFAULT_CHAT_TEMPLATE_DATE,
        )
        user_tokens = len(processor.tokenizer(user_turn, add_special_tokens=False)["input_ids"])
        assert int(record.loc[0, "prompt_tokens"]) == user_tokens
        print(f"served {served}, in-process {in_process_tokens}, as a user turn {user_tokens}")
        later, later_local = prompt_tokens("1 September 2031, a later day")
        assert later == later_local and later > served  # the date sent is the date written
        info = engine.info()
        assert info["engine"] == "transformers" and info["precision"] == "float32"
        assert info["command"].split()[1:3] == ["serve", str(tiny_dir)]
    assert _gone(pid)
    print(f"transformers serve healthy after {healthy_s:.1f} s")

    assert not engines._RUNNING


@pytest.mark.slow
def test_an_engine_that_exits_while_starting_fails_with_its_logs_tail(tmp_path):
    engine = ManagedEngine(
        engine="transformers",
        model=str(tmp_path / "no-such-model"),
        log_path=tmp_path / "logs" / "engine.log",
        dtype="float32",
        device="cpu",
        start_timeout_s=180,
        env={"HF_HUB_OFFLINE": "1"},
    )
    with pytest.raises(EngineError) as raised:
        with engine:
            pytest.fail("it never became healthy")
    message = str(raised.value)
    assert "exited with code" in message and "while starting" in message
    assert str(engine.log_path) in message
    assert engine.log_path.read_text().startswith("$ ")  # the whole log, command first
    assert message.splitlines()[-1] == engine.log_path.read_text().splitlines()[-1]
    assert _gone(engine.process.pid)


def test_an_engine_never_healthy_in_time_is_stopped(tiny_dir, tmp_path):
    engine = _engine(tiny_dir, tmp_path, start_timeout_s=0.5)
    with pytest.raises(EngineError, match=r"did not become healthy .* in 0.5 s"):
        with engine:
            pass
    assert _gone(engine.process.pid)


CHILD = textwrap.dedent(
    """
    import json, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a non-interactive parent may ignore it
    from pathlib import Path
    from hle_reasoning.modeling.engines import ManagedEngine

    engine = ManagedEngine(engine="transformers", model=sys.argv[1], log_path=Path(sys.argv[2]),
                           dtype="float32", device="cpu", start_timeout_s=300)
    try:
        with engine:
            print(json.dumps({"engine": engine.process.pid}), flush=True)
            if sys.argv[3] == "fail":
                sys.stdin.readline()
                raise RuntimeError("a node failed")
            time.sleep(600)
    finally:
        print("cleaned up", flush=True)
    """
)
ENDINGS = {
    "failure": None,  # an exception inside the with block
    "SIGINT": signal.SIGINT,
    "SIGTERM": signal.SIGTERM,
    "SIGKILL": signal.SIGKILL,  # of the process that started the engine: no clean-up of ours
}


@pytest.mark.slow
def test_no_engine_is_left_after_a_failure_sigint_sigterm_or_sigkill(tiny_dir, tmp_path):
    """Four processes each start an engine (at once: one start-up's wait for all); then one
    fails inside its ``with`` block, and the others get SIGINT, SIGTERM and SIGKILL. The first
    three unwind through the block; the SIGKILL reaches the engine as SIGTERM (Linux's parent
    death signal). No engine is left in any case."""
    children = {
        name: subprocess.Popen(
            [
                PYTHON,
                "-c",
                CHILD,
                str(tiny_dir),
                str(tmp_path / f"{name}.log"),
                "fail" if sig is None else "wait",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for name, sig in ENDINGS.items()
    }
    pids: dict[str, int] = {}
    try:
        for name, child in children.items():
            line = child.stdout.readline()
            assert line, child.stderr.read()[-3000:]
            pids[name] = json.loads(line)["engine"]
            assert not _gone(pids[name])
        for name, sig in ENDINGS.items():
            if sig is None:
                children[name].stdin.write("go\n")
                children[name].stdin.flush()
            else:
                children[name].send_signal(sig)
        for name, child in children.items():
            child.wait(timeout=60)
            assert child.returncode != 0, name
            if name != "SIGKILL":
                assert child.stdout.read().strip() == "cleaned up", name
        assert "RuntimeError: a node failed" in children["failure"].stderr.read()
        deadline = time.monotonic() + 30
        while not _gone(pids["SIGKILL"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {name: _gone(pid) for name, pid in pids.items()} == dict.fromkeys(ENDINGS, True)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
        for pid in pids.values():
            if not _gone(pid):
                os.killpg(pid, signal.SIGKILL)  # the test failed: leave nothing behind


# --- The engine backend of the evaluation: refusals before any node, the fallback, the key ---

CONF = Path(__file__).resolve().parents[2] / "conf"


def evaluation_params(**answering) -> dict:
    params = yaml.safe_load((CONF / "base" / "parameters_evaluation.yml").read_text())
    params = copy.deepcopy(params)
    for variant, block in answering.items():
        params["evaluation"]["answering"][variant].update(block)
    return params


def test_the_preflight_refuses_an_engine_that_cannot_serve_here_before_any_node(caplog):
    params = evaluation_params(
        baseline={"backend": "engine", "engine": "vllm"},
        finetuned={"backend": "engine", "engine": "sglang"},
    )
    problems = preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints())
    assert problems[0].startswith(
        "evaluation.answering.baseline.engine is vllm, which cannot serve Llama 3.2 Vision"
    )
    assert "evaluation.answering.finetuned.engine is sglang but sglang is not installed" in (
        "\n".join(problems)
    )
    # vLLM: Mllama, not installed; SGLang: not installed; each: no GPU (none here).
    assert len(problems) == 3 + 2 * (not __import__("torch").cuda.is_available())
    # The paper setup's switch: refused here, answered in-process, with a warning.
    params = evaluation_params(
        baseline={"backend": "engine", "engine": "transformers"},
        finetuned={"backend": "engine", "engine": "sglang", "fallback": "local"},
    )
    with caplog.at_level(logging.WARNING):
        assert (
            preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints()) == []
        )
    assert "answered in-process instead (fallback: local)" in caplog.text
    # Without an engine named, whatever the fallback.
    params = evaluation_params(baseline={"backend": "engine", "fallback": "local"})
    assert preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints()) == [
        "evaluation.answering.baseline.backend is engine but evaluation.answering.baseline.engine "
        "is not set: set it to one of sglang, vllm, transformers"
    ]


def test_the_preflight_warns_that_transformers_serve_writes_mllamas_system_prompt_as_a_list(
    caplog,
):
    # Issue 30: transformers serve 5.24 writes Llama 3.2 Vision's system message as a Python
    # list (the slow test above pins it on a real server): warned, not refused, naming the
    # parameter, the consequence and what to use; not with the system prompt as a user turn.
    params = evaluation_params(baseline={"backend": "engine", "engine": "transformers"})
    with caplog.at_level(logging.WARNING):
        assert (
            preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints()) == []
        )
    (warning,) = [r.getMessage() for r in caplog.records if "system message" in r.getMessage()]
    assert warning.startswith(
        "evaluation.answering.baseline.engine is transformers: `transformers serve` writes Llama "
        "3.2 Vision's system message as a Python list"
    )
    assert "evaluation.generation.system_role is auto" in warning
    assert "not comparable with backend: local or engine: sglang" in warning
    assert "use engine: sglang on a GPU or backend: local" in warning
    caplog.clear()
    params["evaluation"]["generation"]["system_role"] = "user"
    with caplog.at_level(logging.WARNING):
        preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints())
    assert "system message" not in caplog.text
    # A text-only model: transformers serve joins its parts into one string (no warning).
    assert backends.system_message_warning("p", "user") is None
    assert not backends.serves_mllama("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_the_paper_setup_answers_through_sglang_with_the_in_process_fallback():
    paper = yaml.safe_load((CONF / "paper" / "parameters_evaluation.yml").read_text())
    for variant in ("baseline", "finetuned"):
        block = paper["evaluation"]["answering"][variant]
        assert (block["backend"], block["engine"], block["fallback"]) == (
            "engine",
            "sglang",
            "local",
        )


def test_an_engine_answers_key_is_stable_across_ports_and_names_the_setup(tiny_dir, tmp_path):
    generation = GenerationConfig(max_new_tokens=16)
    model = ModelConfig.from_params({"name_or_path": "tiny", "device": "cpu"})

    def key(**answering):
        block = AnsweringConfig(
            backend="engine", engine="transformers", engine_log_dir=str(tmp_path), **answering
        )
        answerer = backends.engine_answerer(block, generation, model, str(tiny_dir), None, "b")
        return answerer.key, answerer.engine.port

    (first, port1), (second, port2) = key(), key()
    assert port1 != port2 and first == second  # a rerun on another port reuses stored answers
    # Llama 3.2 Vision gets the image before the question (image_position auto), as in-process.
    block = AnsweringConfig(backend="engine", engine="transformers", engine_log_dir=str(tmp_path))
    assert backends.engine_answerer(block, generation, model, str(tiny_dir), None, "b").image_first
    after = ModelConfig.from_params(
        {"name_or_path": "tiny", "device": "cpu", "image_position": "after"}
    )
    hle_order = backends.engine_answerer(block, generation, after, str(tiny_dir), None, "b")
    assert not hle_order.image_first and hle_order.key != first
    # Every request gives the template model.chat_template_date (issue 28), keyed by it.
    assert (
        backends.engine_answerer(
            block, generation, model, str(tiny_dir), None, "b"
        ).chat_template_date
        == model.chat_template_date
    )
    dated = ModelConfig.from_params(
        {"name_or_path": "tiny", "device": "cpu", "chat_template_date": "1 Jan 2025"}
    )
    assert backends.engine_answerer(block, generation, dated, str(tiny_dir), None, "b").key != first
    assert key(engine_options={"attn_implementation": "sdpa"})[0] != first
    assert key(max_retries=0, concurrency=1)[0] == first  # not what an answer depends on
    refused = AnsweringConfig(
        backend="engine", engine="vllm", fallback="local", engine_log_dir=str(tmp_path)
    )
    stale = backends.engine_info_path(refused, "b")
    stale.write_text("{}")  # an engine of an earlier run
    assert backends.engine_answerer(refused, generation, model, str(tiny_dir), None, "b") is None
    assert not stale.exists()
    with pytest.raises(ConfigError, match="vllm, which cannot serve Llama 3.2 Vision"):
        backends.engine_answerer(
            AnsweringConfig(backend="engine", engine="vllm"),
            generation,
            model,
            str(tiny_dir),
            None,
            "b",
        )


def test_the_merged_checkpoint_is_made_when_missing_and_remade_when_stale(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from hle_reasoning.modeling.families import family_of
    from hle_reasoning.modeling.models import load_model

    network = load_model(str(tiny_dir), quantization=None, device="cpu", dtype="float32")
    target = family_of(tiny_dir).lora_target(["q_proj", "v_proj"])
    adapter = tmp_path / "adapter"
    get_peft_model(
        network, LoraConfig(r=2, target_modules=target, init_lora_weights=False)
    ).save_pretrained(adapter)
    model = ModelConfig.from_params({"name_or_path": "tiny", "device": "cpu"})
    merged = tmp_path / "merged_model"
    assert backends.merged_checkpoint(str(tiny_dir), str(adapter), model, str(merged)) == str(
        merged
    )
    weights = next(merged.glob("*.safetensors"))
    made = weights.stat().st_mtime_ns
    assert (merged / "config.json").is_file() and (merged / "merged_from.json").is_file()
    backends.merged_checkpoint(str(tiny_dir), str(adapter), model, str(merged))
    assert next(merged.glob("*.safetensors")).stat().st_mtime_ns == made  # reused
    (adapter / "adapter_config.json").write_text(
        (adapter / "adapter_config.json").read_text().replace('"r": 2', '"r": 2 ')
    )
    backends.merged_checkpoint(str(tiny_dir), str(adapter), model, str(merged))
    assert next(merged.glob("*.safetensors")).stat().st_mtime_ns != made  # another adapter


def test_the_serving_pipelines_checkpoint_says_what_it_was_merged_from_and_is_reused(
    tiny_dir, tmp_path
):
    """`kedro run --pipelines serving` writes merged_from.json as the engine path does: an
    engine run then serves that checkpoint instead of merging again."""
    from peft import LoraConfig, get_peft_model

    from hle_reasoning.datasets import BaseModelDataset
    from hle_reasoning.modeling.families import family_of
    from hle_reasoning.modeling.models import load_model
    from hle_reasoning.pipelines.serving.pipeline import merge_lora_adapter

    network = load_model(str(tiny_dir), quantization=None, device="cpu", dtype="float32")
    target = family_of(tiny_dir).lora_target(["q_proj", "v_proj"])
    adapter = tmp_path / "adapter"
    get_peft_model(
        network, LoraConfig(r=2, target_modules=target, init_lora_weights=False)
    ).save_pretrained(adapter)
    model = ModelConfig.from_params({"name_or_path": "tiny", "device": "cpu"})
    merged = tmp_path / "merged_model"
    BaseModelDataset(path=str(merged)).save(merge_lora_adapter(str(tiny_dir), str(adapter), model))
    assert json.loads((merged / engines.MERGED_FROM_FILE).read_text()) == engines.merged_from(
        str(tiny_dir), str(adapter), model.dtype
    )
    made = next(merged.glob("*.safetensors")).stat().st_mtime_ns
    backends.merged_checkpoint(str(tiny_dir), str(adapter), model, str(merged))
    assert next(merged.glob("*.safetensors")).stat().st_mtime_ns == made  # served as written


def test_the_preflight_refuses_an_engine_option_the_engine_would_read_as_a_flag():
    params = evaluation_params(
        baseline={
            "backend": "engine",
            "engine": "transformers",
            "engine_options": {"chat_template": "-x", "port": 1},
        },
    )
    problems = preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints())
    assert problems == [
        "evaluation.answering.baseline.engine_options.chat_template is '-x', which starts with "
        "'-': the engine's argument parser would read it as an option of its own, not as the "
        "value of --chat-template; pass a value that does not start with '-' (a path as ./-x)"
    ]
