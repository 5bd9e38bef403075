"""Regenerate the tiny model's tokenizer from the bundled sample (src/hle_reasoning/assets/tiny_tokenizer)."""

import argparse

from hle_reasoning.hle.data.synthetic import generate_sample
from hle_reasoning.modeling.models import tiny_tokenizer_dir
from hle_reasoning.modeling.tiny_tokenizer import write_tiny_tokenizer

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(tiny_tokenizer_dir()))
    parser.add_argument("--vocab-size", type=int, default=2048)
    args = parser.parse_args()
    texts = [f"{r['question']}\n{r['answer']}" for r in generate_sample()]
    print(f"wrote {write_tiny_tokenizer(texts, args.out, args.vocab_size)}")
