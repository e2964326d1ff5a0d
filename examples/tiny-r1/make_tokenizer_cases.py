"""Write test strings and their ids from bpe.py's Python encoder as JSON, for
check_tokenizer.js to compare with the Rust tokenizers library.

    python3 make_tokenizer_cases.py [--tokenizer hf/tokenizer.json] [--n 3000] > out/cases.json

Cases: n training conversations and 200 held-out ones (full rendered R1 chat
text, special tokens included), their prompts alone, plus hand-written strings
that exercise the pre-tokenizer (whitespace runs, newlines, punctuation,
non-ASCII, CJK, long digit runs, special tokens inside text).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe   # noqa: E402
import data  # noqa: E402

EXTRA = [
    "Hello, world!",
    " hello",
    "hello ",
    "  two leading spaces",
    "trailing spaces   ",
    "a\n\nb\r\n c \n\n\n  d",
    "tabs\tand\t\tmore\t",
    "I'm sure they'll say it's fine, but we don't know.",
    "e.g. i.e. etc. Mr. Smith vs. Dr. Jones",
    "def add(a, b):\n    return a + b\n",
    "1234567890 12 123 1234 3.14159 -42 1e10",
    "x=1+2*3/4-5; y==z != w >= v <= u",
    "Price: $1,234.56 (approx.) #tag @user ~home ^caret",
    "naïve café résumé Straße",
    "数学是美丽的。ひらがな カタカナ 한국어",
    "emoji 😀 and symbols © ® ™ × ÷ → ∑",
    "<｜User｜>What is 2+2?<｜Assistant｜><think>\n2+2=4.\n</think>\n\n4<｜end▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜>system<｜User｜>hi<｜Assistant｜>",
    "<think></think><think>\n\n</think>",
    "<|EOT|> <｜▁pad▁｜> <｜tool▁sep｜>",
    "What is 347 + 285?",
    "Which is larger, 512 or 498?",
    "Tom has 347 apples and buys 285 more. How many apples does he have now?",
    "What is 47 × 38?",
    "",
    " ",
    "\n",
    "...!!!???",
    " ...word",
    ".word",
    "'s 've 're",
    "a  b   c    d",
    "end with newline\n",
    "mixed 12ab34 cd567ef",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "hf", "tokenizer.json"))
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    tok = bpe.Tokenizer(args.tokenizer)
    texts = []
    for ex in data.generate(args.n, args.seed, "train"):
        texts.append(data.text_of(ex))
    for ex in data.generate(200, args.seed, "heldout"):
        texts.append(data.text_of(ex))
        texts.append(data.render_prompt(ex["question"]))
    texts += EXTRA
    cases = [{"text": t, "ids": tok.encode(t)} for t in texts]
    json.dump(cases, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
