"""The ``evaluation`` block (conf/base/parameters_evaluation.yml): answering, judging, metrics,
the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from hle_reasoning.config.parsing import Block, ConfigError, at_least, check, parse
from hle_reasoning.hle.data.prompts import SystemRole
from hle_reasoning.hle.judge.llm import DEFAULT_JUDGE_MODEL
from hle_reasoning.hle.judge.table import RulesOptions

_INT1 = at_least(1, "an integer")


class GenerationConfig(Block):
    """How answers are generated (``evaluation.generation``).

    ``batch_size``: questions per ``generate`` call. ``max_new_tokens``: the response budget.
    ``do_sample``: ``False`` is greedy (the official script's temperature 0); ``True`` samples
    with ``temperature`` and ``top_p``, seeded by ``seed`` per batch. ``system_role``: where the
    HLE system prompt goes (``auto``: a system message, or the user turn for image questions,
    which Llama 3.2 Vision's template requires; see ``hle_reasoning.hle.data.prompts``).
    ``cpu_threads``: torch's intra-op threads while generating on a CPU (``None``: torch's
    default); not part of what an answer depends on (``generation_key`` leaves it out).
    """

    PATH: ClassVar[str] = "evaluation.generation"
    batch_size: Annotated[int, check(lambda v: v >= 1, "it must be >= 1")] = 8
    max_new_tokens: Annotated[int, check(lambda v: v >= 1, "it must be >= 1")] = 64
    do_sample: bool = False
    temperature: float = 0.7
    top_p: Annotated[float, check(lambda v: 0 < v <= 1, "set it in (0, 1]")] = 1.0
    seed: int = 0
    system_role: SystemRole = "auto"
    cpu_threads: Annotated[
        int | None,
        check(lambda v: v >= 1, "it must be >= 1 or null"),
    ] = 1

    def cross_checks(self) -> list[str]:
        if self.do_sample and self.temperature <= 0:
            return [
                "evaluation.generation.temperature must be > 0 when do_sample is true; "
                "set do_sample: false for greedy decoding"
            ]
        if self.system_role not in ("auto", "system", "user"):
            return [
                "evaluation.generation.system_role must be auto, system or user "
                f"(got {self.system_role!r})"
            ]
        return []

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> GenerationConfig:
        config, problems = parse(cls, params or {}, cls.PATH)
        if problems or config is None:
            unknown = sorted(set(params or {}) - set(cls.model_fields))
            header = (
                f"unknown evaluation.generation parameter(s) {unknown}:"
                if unknown
                else "evaluation.generation cannot work as configured:"
            )
            raise ConfigError(problems, header=header)
        return config


class LLMJudgeSettings(Block):
    """The ``llm`` judge: HLE's official prompt on an OpenAI-compatible endpoint.

    The endpoint's key, base URL and (optionally) model come from the ``judge_endpoint`` dataset
    (credentials or environment), which take precedence over ``model`` and ``base_url`` here.
    """

    PATH: ClassVar[str] = "evaluation.judge.llm"
    model: str = DEFAULT_JUDGE_MODEL
    base_url: str | None = None
    max_retries: Annotated[int, at_least(0, "an integer")] = 5
    timeout_s: Annotated[float, check(lambda v: v > 0, "set it > 0")] = 600.0
    max_completion_tokens: Annotated[int, _INT1] = 4096
    workers: Annotated[int, _INT1] = 8
    unreachable_after: Annotated[int, _INT1] = 3


class JudgeConfig(Block):
    """Which judge decides correctness: ``rules`` (offline) or ``llm`` (the official one)."""

    PATH: ClassVar[str] = "evaluation.judge"
    kind: Literal["rules", "llm"] = "rules"
    rules: RulesOptions = Field(default_factory=RulesOptions)
    llm: LLMJudgeSettings = Field(default_factory=LLMJudgeSettings)

    def model_used(self, endpoint_model: str | None) -> str:
        """The LLM that judges: the endpoint's (credentials or ``HLE_JUDGE_MODEL``), else
        ``llm.model``."""
        return endpoint_model or self.llm.model

    def label(self, endpoint_model: str | None = None, style: str = "tag") -> str:
        """Who judged: ``rules``, or the LLM that actually judged (``llm:<model>`` as an MLflow
        tag, ``llm (<model>)`` in the report)."""
        if self.kind == "rules":
            return "rules"
        model = self.model_used(endpoint_model)
        return f"llm:{model}" if style == "tag" else f"llm ({model})"


class MetricsConfig(Block):
    """HLE's calibration error settings and the reliability diagrams' bins."""

    PATH: ClassVar[str] = "evaluation.metrics"
    beta: Annotated[int, _INT1] = 100
    p: Literal["1", "2", "max"] = "2"
    reliability_bins: Annotated[int, _INT1] = 10


class ComparisonConfig(Block):
    """Baseline against fine-tuned (``hle_reasoning.hle.scoring.comparison``): the level of the accuracy
    and calibration difference intervals, and the seeded paired bootstrap of the latter."""

    PATH: ClassVar[str] = "evaluation.comparison"
    confidence_level: Annotated[
        float,
        check(lambda v: 0 < v < 1, "set it in (0, 1), e.g. 0.95"),
    ] = 0.95
    bootstrap_resamples: Annotated[int, _INT1] = 2000
    seed: Annotated[int, at_least(0, "an integer")] = 0


class PaperRow(Block):
    """One row of the HLE paper's Table 1 as the proposal reproduces it."""

    PATH: ClassVar[str] = "evaluation.report.paper_rows[]"
    model: str
    accuracy: float
    calibration_error: float
    note: str = ""


class ReportConfig(Block):
    """Table 1's paper rows and the measured rows' labels (no defaults: the YAML holds them)."""

    PATH: ClassVar[str] = "evaluation.report"
    paper_source: str
    paper_rows: tuple[PaperRow, ...]
    test_set: str
    model_names: dict[str, str]
    labels: dict[str, str]
    training_examples: Annotated[int, at_least(0, "an integer")] = 2

    def label(self, variant: str, name_or_path: str) -> str:
        """The Table 1 row label of a variant (``labels[variant]`` with ``{model}`` filled in)."""
        from pathlib import Path

        from hle_reasoning.config.model import TINY

        model = self.model_names.get(name_or_path)
        if model is None:
            model = "Tiny Mllama (random init)" if name_or_path == TINY else Path(name_or_path).name
        template = self.labels.get(variant, "{model} ({variant})")
        return template.format(model=model, variant=variant)


class AnsweringConfig(Block):
    """Who answers a variant's questions (``evaluation.answering.<variant>``).

    ``backend``: ``local`` generates in-process (``evaluation.generation``); ``openai`` asks an
    OpenAI-compatible server (vLLM, SGLang, ``transformers serve``, a hosted API) with HLE's
    request: the official system prompt, the image as a data-URI part, ``max_new_tokens`` as the
    token budget, temperature 0 unless ``do_sample``. ``model`` and ``base_url`` name the served
    model and the server; the ``answer_endpoints`` dataset (credentials or environment) may
    override them and holds the key. ``concurrency`` requests at a time (after a first one
    alone), ``max_retries`` retries of a transient failure by the OpenAI client,
    ``timeout_s`` per request; ``unreachable_after`` connection failures in a row (after the
    retries) stop the node (``hle_reasoning.unreachable``).

    ``engine``: the run starts a serving engine itself (``engine: sglang | vllm |
    transformers``, ``hle_reasoning.modeling.engines``) on a free local port, on the variant's
    model (the base model for the baseline, the merged checkpoint ``merged_model`` for the
    fine-tuned one, merged when missing or stale) in ``model.dtype``, and asks it exactly as the
    ``openai`` backend asks a server (``model`` and ``base_url`` are then unused).
    ``engine_options``: the engine's own command-line options, passed through (``{tp_size: 2}``
    is ``--tp-size 2``; ``true``: a bare flag). ``start_timeout_s``: how long the engine may take
    to answer its health check. ``engine_log_dir``: where the engine's whole log is saved.
    ``fallback``: what a refused engine (not installed, no GPU for a GPU-only engine, a family
    it cannot serve) does: ``none`` stops the run in the preflight; ``local`` answers the
    variant in-process instead, with a warning (the paper setup's switch, conf/paper).

    ``chat_template_kwargs`` (``openai`` only): ``true`` sends ``model.chat_template_date`` as
    ``chat_template_kwargs: {date_string: ...}`` in each request, which vLLM, SGLang and
    ``transformers serve`` give to the chat template, so the served prompt writes the in-process
    date whatever the server's day; ``false`` (the default) sends nothing beyond HLE's request
    (a hosted API may refuse unknown fields). A managed engine always sends it. When sent, the date
    is part of the answers' key.
    """

    PATH: ClassVar[str] = "evaluation.answering.<variant>"
    backend: Literal["local", "openai", "engine"] = "local"
    model: str | None = None
    base_url: str | None = None
    concurrency: Annotated[int, _INT1] = 8
    max_retries: Annotated[int, at_least(0, "an integer")] = 5
    timeout_s: Annotated[float, check(lambda v: v > 0, "set it > 0")] = 600.0
    unreachable_after: Annotated[int, _INT1] = 3
    engine: Literal["sglang", "vllm", "transformers"] | None = None
    engine_options: dict[str, bool | int | float | str] = Field(default_factory=dict)
    start_timeout_s: Annotated[float, check(lambda v: v > 0, "set it > 0")] = 900.0
    engine_log_dir: str = "data/07_model_output/engine_logs"
    merged_model: str = "data/06_models/merged_model"
    fallback: Literal["none", "local"] = "none"
    chat_template_kwargs: bool = False


class ComparisonModelConfig(AnsweringConfig):
    """A model measured beside the study's variants (``evaluation.comparison_models[]``): a
    variant of the same kind as baseline and fine-tuned, its answering block an
    :class:`AnsweringConfig` (``backend: openai``, its defaults) with a ``name`` and ``text_only``.

    ``name`` is its Table 1 label (and its name in the ``answer_endpoints`` credentials and the
    ``HLE_ANSWER_<NAME>_*`` variables); ``model`` and ``base_url`` name the served model and the
    OpenAI-compatible server (credentials or environment may override them and hold the key).
    ``text_only``: the model takes no images, so it answers (and is compared on) the test
    questions without one, as the HLE paper evaluates text-only models.
    """

    PATH: ClassVar[str] = "evaluation.comparison_models[]"
    name: Annotated[str, check(lambda v: v.strip() != "", "give the Table 1 label")]
    backend: Literal["openai"] = "openai"
    text_only: bool = False

    @property
    def answering(self) -> AnsweringConfig:
        """The answering block this model is asked with: itself."""
        return self


class EvaluationConfig(Block):
    """The whole ``evaluation`` block."""

    PATH: ClassVar[str] = "evaluation"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    answering: dict[str, AnsweringConfig] = Field(
        default_factory=lambda: {v: AnsweringConfig() for v in ("baseline", "finetuned")}
    )
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    comparison: ComparisonConfig = Field(default_factory=ComparisonConfig)
    comparison_models: tuple[ComparisonModelConfig, ...] = ()
    report: ReportConfig

    def cross_checks(self) -> list[str]:
        from hle_reasoning.hle.formatting import slug

        problems, seen = [], {slug(v): f"evaluation.answering.{v}" for v in self.answering}
        for i, entry in enumerate(self.comparison_models):
            where = f"evaluation.comparison_models[{i}].name"
            if slug(entry.name) in seen:
                problems.append(
                    f"{where} is {entry.name!r}, which names the same thing as {seen[slug(entry.name)]} "
                    "(names are compared in lower case, punctuation as _): give each model its own name"
                )
            seen[slug(entry.name)] = where
        return problems
