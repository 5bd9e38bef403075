"""The HLE statistics count the tiny model's tokens with the `tokenizers` library alone: the same
counts as its transformers tokenizer, on the bundled sample and on any text."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from hle_reasoning.modeling.models import count_tokens, load_token_counter, load_tokenizer
from tests.test_startup import HEAVY

COUNTER = load_token_counter("tiny")
TOKENIZER = load_tokenizer("tiny")


def test_the_sample_questions_count_as_the_transformers_tokenizer_counts(sample_questions):
    texts = sample_questions["question"].tolist()
    counts = count_tokens(COUNTER, texts)
    assert counts == count_tokens(TOKENIZER, texts)
    assert len(counts) == len(texts) and min(counts) > 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=5))
def test_any_text_counts_the_same(texts):
    assert count_tokens(COUNTER, texts) == count_tokens(TOKENIZER, texts)


def test_the_counter_imports_no_heavy_library():
    code = (
        "import json, sys\n"
        "from hle_reasoning.modeling.models import count_tokens, load_token_counter\n"
        "n = count_tokens(load_token_counter('tiny'), ['What is 2 + 3?'])\n"
        f"print(json.dumps([n, sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    counts, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts[0] > 0 and heavy == []
