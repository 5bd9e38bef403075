"""Regenerate the bundled synthetic HLE-format sample (data/01_raw/hle_sample.jsonl)."""

import argparse

from hle_reasoning.hle.data.synthetic import write_sample

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="data/01_raw/hle_sample.jsonl")
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args()
    print(f"wrote {write_sample(args.out, args.seed)}")
