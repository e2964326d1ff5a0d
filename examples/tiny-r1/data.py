"""Synthetic arithmetic reasoning data in the DeepSeek-R1 chat format.

Every example is one user question and one assistant reply rendered exactly
as the R1 chat template renders a finished conversation (spec 6.4):

    <｜begin▁of▁sentence｜><｜User｜>{question}<｜Assistant｜><think>\n{working}\n</think>\n\n{answer}<｜end▁of▁sentence｜>

The prompt a model is given at inference time is the generation prompt
``<｜begin▁of▁sentence｜><｜User｜>{question}<｜Assistant｜><think>\n``; the
model has to produce the rest.

Categories: add (2-3 digit + 2-3 digit), sub (a - b with a >= b, 2-3 digits),
mul1 (2 digit x 1 digit), mul2 (2 digit x 2 digit), cmp (which is larger /
smaller). Each comes as a plain question or a worded problem.

The working is a column procedure: the operands are first written with place
labels ("347 = 3 hundreds, 4 tens, 7 ones."), so that every later step can
find the digit it needs by its label, then one line per column.

Held-out split: an operand pair (unordered for add/mul/cmp, ordered for sub)
is held out iff a fixed integer hash of (category, pair) falls in the held-out
bucket (1 in 16). Training examples never use a held-out pair and evaluation
examples only use held-out pairs. Everything is deterministic given the seed.

Usage: python3 data.py [--n 5] [--seed 1234] [--split train|heldout]
"""

import argparse
import random

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"

CATEGORIES = ["add", "sub", "mul1", "cmp"]   # mul2 (2x2 digit) dropped in v2
# sampling weights for training (addition weighted most)
WEIGHTS = {"add": 0.50, "sub": 0.24, "mul1": 0.11, "cmp": 0.15}
WORDED_SHARE = 0.35
# category index used by the held-out hash (fixed; v1 had mul2 at 3, cmp at 4)
HASH_INDEX = {"add": 0, "sub": 1, "mul": 2, "cmp": 4}

PLACES = ["ones", "tens", "hundreds", "thousands"]
NAMES = ["Tom", "Anna", "Ben", "Maria", "Sam", "Lily", "Omar", "Mia", "Leo", "Zoe"]
PRONOUN = {"Tom": "he", "Ben": "he", "Sam": "he", "Omar": "he", "Leo": "he",
           "Anna": "she", "Maria": "she", "Lily": "she", "Mia": "she", "Zoe": "she"}
ITEMS = ["apples", "books", "coins", "stamps", "marbles", "pencils", "cards", "shells"]


def render_prompt(question):
    """The R1 generation prompt for one user message (spec 6.4, rule 6)."""
    return BOS + USER + question + ASSISTANT + THINK + "\n"


def render_completion(working, answer):
    """What the model must generate after the prompt."""
    return working + "\n" + END_THINK + "\n\n" + answer + EOS


def render(question, working, answer):
    """The full conversation text (prompt + completion)."""
    return render_prompt(question) + render_completion(working, answer)


# ---------------------------------------------------------------- held-out split

def _mix(x):
    """A fixed 64-bit integer hash (splitmix64 finaliser)."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


HELDOUT_MOD = 16


def pair_key(cat, a, b):
    base = {"add": "add", "sub": "sub", "mul1": "mul", "mul2": "mul", "cmp": "cmp"}[cat]
    if base != "sub":
        a, b = min(a, b), max(a, b)
    return (HASH_INDEX[base], a, b)


def is_heldout(cat, a, b):
    c, x, y = pair_key(cat, a, b)
    return _mix(c * 1_000_003 * 1_000_003 + x * 1_000_003 + y) % HELDOUT_MOD == 0


# ---------------------------------------------------------------- procedures
#
# Compact fixed-width working (v2). The first line restates the operands with
# zero padding to 3 digits ("047+285"), so every later step finds the digit it
# needs at a FIXED distance back (each column line has exactly the same number
# of tokens: every digit is one token). Columns go from the ones upwards; each
# line is a true equation whose first result digit is the carry/borrow used by
# the next line:
#   add  x+y+c=SS   (two-digit sum, e.g. 7+5+0=12, 1+2+1=04)
#   sub  Bx-y-c=r   (B=1 when the column borrows ten: 15-6-0=9, 07-2-1=4)
#   mul  x*m+c=PP   (2-digit x 1-digit: 7*8+0=56, 4*8+5=37)
#   cmp  digits from the left: x=y / x<y / x>y until they differ
# The last line is "=" and the result zero-padded to a fixed width (4 digits for
# add, 3 otherwise), so its digits too sit at fixed distances from the column
# lines they come from. The answer after </think> ("The answer is 632.") is then
# the one step that moves a number to a place whose alignment varies: it drops
# the leading zeros of that line, which is right above it.

W = 3  # fixed operand width


def pad(n, w=W):
    return str(n).zfill(w)


def working_add(a, b):
    A, B = pad(a), pad(b)
    lines = ["%s+%s" % (A, B)]
    c = 0
    for i in range(W - 1, -1, -1):
        x, y = int(A[i]), int(B[i])
        s = x + y + c
        lines.append("%d+%d+%d=%02d" % (x, y, c, s))
        c = s // 10
    lines.append("=%s" % pad(a + b, W + 1))
    return "\n".join(lines), a + b


def working_sub(a, b):
    A, B = pad(a), pad(b)
    lines = ["%s-%s" % (A, B)]
    c = 0
    for i in range(W - 1, -1, -1):
        x, y = int(A[i]), int(B[i])
        v = x - y - c
        br = 1 if v < 0 else 0
        lines.append("%d%d-%d-%d=%d" % (br, x, y, c, v + 10 * br))
        c = br
    lines.append("=%s" % pad(a - b))
    return "\n".join(lines), a - b


def working_mul1(a, m):
    A = pad(a, 2)
    lines = ["%s*%d" % (A, m)]
    c = 0
    for i in range(1, -1, -1):
        x = int(A[i])
        p = x * m + c
        lines.append("%d*%d+%d=%02d" % (x, m, c, p))
        c = p // 10
    lines.append("=%s" % pad(a * m))
    return "\n".join(lines), a * m


def working_cmp(a, b, larger):
    A, B = pad(a), pad(b)
    lines = ["%s,%s" % (A, B)]
    for i in range(W):
        x, y = int(A[i]), int(B[i])
        lines.append("%d%s%d" % (x, "=" if x == y else ("<" if x < y else ">"), y))
        if x != y:
            break
    r = max(a, b) if larger else min(a, b)
    lines.append("=%s" % pad(r))
    return "\n".join(lines), r


# ---------------------------------------------------------------- questions

def _rand_n(rng):
    """Training operand: 1, 2 or 3 digits (a light curriculum-free mix that
    over-represents short numbers compared with uniform 10-999)."""
    k = rng.choices([1, 2, 3], weights=[0.1, 0.3, 0.6])[0]
    return rng.randint(0 if k == 1 else 10 ** (k - 1), 10 ** k - 1)


def sample_operands(cat, rng, split="heldout"):
    if split == "train" and cat in ("add", "sub"):
        a, b = _rand_n(rng), _rand_n(rng)
        if cat == "sub" and a < b:
            a, b = b, a
        return a, b
    if cat == "add":
        return rng.randint(10, 999), rng.randint(10, 999)
    if cat == "sub":
        a = rng.randint(10, 999)
        b = rng.randint(10, 999)
        if a < b:
            a, b = b, a
        return a, b
    if cat == "mul1":
        return rng.randint(10, 99), rng.randint(2, 9)
    if cat == "mul2":
        return rng.randint(10, 99), rng.randint(10, 99)
    if cat == "cmp":
        while True:
            a, b = rng.randint(10, 999), rng.randint(10, 999)
            if a != b:
                # make close numbers common so the digit-by-digit path is exercised
                if rng.random() < 0.5 and a >= 100:
                    b = a + rng.choice([-1, 1]) * rng.choice([1, 2, 5, 9, 10, 20, 50, 90])
                    if not (10 <= b <= 999) or b == a:
                        continue
                return a, b
    raise ValueError(cat)


def make_example(cat, a, b, rng):
    """Returns dict(category, a, b, question, working, answer, worded)."""
    # plain questions are the main use; worded ones need the harder copy from a
    # variable position, so they are a bit rarer
    worded = rng.random() < WORDED_SHARE
    name = rng.choice(NAMES)
    pron = PRONOUN[name]
    item = rng.choice(ITEMS)
    # Every numeric answer starts "The answer is ", a fixed text between the padded
    # result line and the number, so that the number is copied from a fixed distance.
    if cat == "add":
        work, r = working_add(a, b)
        if worded:
            q = rng.choice([
                "%s has %d %s and buys %d more. How many %s does %s have now?" % (name, a, item, b, item, pron),
                "%s has %d %s. Then %s finds %d more. How many %s does %s have now?" % (name, a, item, pron, b, item, pron),
                "A box holds %d %s and another box holds %d %s. How many %s are there in total?" % (a, item, b, item, item),
            ])
            ans = "The answer is %d %s." % (r, item)
        else:
            q = rng.choice(["What is %d + %d?", "What is %d plus %d?", "Compute %d + %d."]) % (a, b)
            ans = "The answer is %d." % r
    elif cat == "sub":
        work, r = working_sub(a, b)
        if worded:
            verb = rng.choice(["gives away", "sells", "loses"])
            q = "%s has %d %s and %s %d. How many %s are left?" % (name, a, item, verb, b, item)
            ans = "The answer is %d %s." % (r, item)
        else:
            q = rng.choice(["What is %d - %d?", "What is %d minus %d?", "Compute %d - %d."]) % (a, b)
            ans = "The answer is %d." % r
    elif cat in ("mul1", "mul2"):
        work, r = (working_mul1 if cat == "mul1" else working_mul2)(a, b)
        if worded:
            q = rng.choice([
                "%s buys %d bags with %d %s in each bag. How many %s does %s buy?" % (name, b, a, item, item, pron),
                "There are %d boxes and each box holds %d %s. How many %s are there?" % (b, a, item, item),
            ])
            ans = "The answer is %d %s." % (r, item)
        else:
            q = rng.choice(["What is %d × %d?", "What is %d * %d?", "What is %d times %d?"]) % (a, b)
            ans = "The answer is %d." % r
    elif cat == "cmp":
        larger = rng.random() < 0.7
        other = None
        work, r = working_cmp(a, b, larger)
        if worded:
            other = rng.choice([n for n in NAMES if n != name])
            q = "%s has %d %s and %s has %d %s. Who has %s?" % (
                name, a, item, other, b, item, "more" if larger else "fewer")
            who = name if r == a else other
            ans = "%s has %s %s." % (who, "more" if larger else "fewer", item)
        else:
            q = "Which is %s, %d or %d?" % ("larger" if larger else "smaller", a, b)
            ans = "The answer is %d." % r
    else:
        raise ValueError(cat)
    if worded:
        # The words the answer repeats from a worded question are first written down at the
        # top of the working, next to the question, so that the answer copies them from a
        # place at a nearly fixed distance instead of searching the question for them.
        work = ("%s,%s %s" % (name, other, item) if cat == "cmp" else item) + "\n" + work
    return dict(category=cat, a=a, b=b, worded=worded, question=q, working=work, answer=ans)


def generate(n, seed, split="train", cats=None):
    """n examples of the given split; deterministic in (n, seed, split)."""
    rng = random.Random("%s-%d" % (split, seed))
    cats = cats or CATEGORIES
    w = [WEIGHTS[c] for c in cats]
    out = []
    while len(out) < n:
        cat = rng.choices(cats, weights=w)[0] if split == "train" else cats[len(out) % len(cats)]
        a, b = sample_operands(cat, rng, split)
        if is_heldout(cat, a, b) != (split == "heldout"):
            continue
        out.append(make_example(cat, a, b, rng))
    return out


def text_of(ex):
    return render(ex["question"], ex["working"], ex["answer"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--split", default="train")
    args = ap.parse_args()
    for ex in generate(args.n, args.seed, args.split):
        print(text_of(ex))
        print("-" * 40)
