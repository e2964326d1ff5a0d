"""Byte-level BPE for tiny-r1: a trainer that writes a Hugging Face
tokenizer.json with the DeepSeek-R1 structure, and a pure-Python encoder that
gives the same ids as the Hugging Face (Rust) tokenizers library.

Structure copied from the R1 tokenizer.json (spec 6.1): no normalizer, the
4-step pre-tokenizer (digit groups of <= 3, CJK runs, the main split regex,
ByteLevel without its own regex), ByteLevel decoder and post-processor, a BPE
model without unk/byte fallback. Vocabulary: the 256 byte symbols (id = byte
value), then the learned merges in order, then the R1 added tokens (with the
R1 contents and flags) after the learned vocabulary.

Digit groups are excluded from merge learning, so every digit is its own
token (the pre-tokenizer is still R1's; the merges simply never join digits).

The pre-tokenizer is implemented by hand (Python's re has no \\p{..}); it
follows Oniguruma leftmost-first alternation for the regex of spec 6.1.

Usage:
    python3 bpe.py train --out hf/ [--n 20000 --seed 1234 --merges 1000 --min-freq 20]
    python3 bpe.py encode hf/tokenizer.json "some text"
"""

import argparse
import json
import os
import sys
import unicodedata

# ---------------------------------------------------------------- R1 structure

PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex":
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
            "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}
NORMALIZER = {"type": "Sequence", "normalizers": []}
POST_PROCESSOR = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}

# (content, special, normalized) in R1 order; R1 ids 0, 1, 2, then 128798 ... 128814.
# The 798 "<｜place▁holder▁no▁N｜>" tokens of R1 are left out.
ADDED_TOKENS = [
    ("<｜begin▁of▁sentence｜>", True, False),
    ("<｜end▁of▁sentence｜>", True, False),
    ("<｜▁pad▁｜>", True, False),
    ("<think>", False, True),
    ("</think>", False, True),
    ("<｜fim▁hole｜>", False, True),
    ("<｜fim▁begin｜>", False, True),
    ("<｜fim▁end｜>", False, True),
    ("<｜User｜>", False, True),
    ("<｜Assistant｜>", False, True),
    ("<|EOT|>", True, True),
    ("<｜tool▁calls▁begin｜>", False, True),
    ("<｜tool▁calls▁end｜>", False, True),
    ("<｜tool▁call▁begin｜>", False, True),
    ("<｜tool▁call▁end｜>", False, True),
    ("<｜tool▁outputs▁begin｜>", False, True),
    ("<｜tool▁outputs▁end｜>", False, True),
    ("<｜tool▁output▁begin｜>", False, True),
    ("<｜tool▁output▁end｜>", False, True),
    ("<｜tool▁sep｜>", False, True),
]

# The R1 chat template logic of spec 6.4, written as a Jinja template:
# system prompts (joined with "\n\n") after BOS; <｜User｜> turns; assistant
# text turns keep only the text after the last </think>; tool calls / tool
# outputs in the intended form; generation prompt <｜Assistant｜><think>\n.
CHAT_TEMPLATE = (
    "{%- if add_generation_prompt is not defined %}{%- set add_generation_prompt = false %}{%- endif %}"
    "{%- set ns = namespace(sys='', has_sys=false, in_tool=false) %}"
    "{%- for m in messages %}{%- if m['role'] == 'system' %}"
    "{%- if ns.has_sys %}{%- set ns.sys = ns.sys + '\\n\\n' + m['content'] %}"
    "{%- else %}{%- set ns.sys = m['content'] %}{%- set ns.has_sys = true %}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{{- bos_token }}{{- ns.sys }}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'user' %}"
    "{%- if ns.in_tool %}{{- '<｜tool▁outputs▁end｜>' }}{%- set ns.in_tool = false %}{%- endif %}"
    "{{- '<｜User｜>' + m['content'] }}"
    "{%- elif m['role'] == 'assistant' and m['content'] is none %}"
    "{%- if ns.in_tool %}{{- '<｜tool▁outputs▁end｜>' }}{%- set ns.in_tool = false %}{%- endif %}"
    "{{- '<｜Assistant｜><｜tool▁calls▁begin｜>' }}"
    "{%- for t in m['tool_calls'] %}{%- if not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<｜tool▁call▁begin｜>' + t['type'] + '<｜tool▁sep｜>' + t['function']['name'] + '\\n```json\\n'"
    " + t['function']['arguments'] + '\\n```<｜tool▁call▁end｜>' }}"
    "{%- endfor %}{{- '<｜tool▁calls▁end｜><｜end▁of▁sentence｜>' }}"
    "{%- elif m['role'] == 'assistant' %}"
    "{%- set c = m['content'] %}{%- if '</think>' in c %}{%- set c = c.split('</think>')[-1] %}{%- endif %}"
    "{%- if ns.in_tool %}{{- '<｜tool▁outputs▁end｜>' + m['content'] + '<｜end▁of▁sentence｜>' }}"
    "{%- set ns.in_tool = false %}"
    "{%- else %}{{- '<｜Assistant｜>' + c + '<｜end▁of▁sentence｜>' }}{%- endif %}"
    "{%- elif m['role'] == 'tool' %}"
    "{%- if ns.in_tool %}{{- '\\n<｜tool▁output▁begin｜>' + m['content'] + '<｜tool▁output▁end｜>' }}"
    "{%- else %}{{- '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + m['content'] + '<｜tool▁output▁end｜>' }}"
    "{%- set ns.in_tool = true %}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if ns.in_tool %}{{- '<｜tool▁outputs▁end｜>' }}{%- endif %}"
    "{%- if add_generation_prompt and not ns.in_tool %}{{- '<｜Assistant｜><think>\\n' }}{%- endif %}"
)

# ---------------------------------------------------------------- byte <-> char

def _byte_chars():
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table = {}
    n = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR = _byte_chars()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def to_byte_chars(s):
    return "".join(BYTE_TO_CHAR[b] for b in s.encode("utf-8"))


# ---------------------------------------------------------------- pre-tokenizer

def _cat(c):
    return unicodedata.category(c)


def _is_N(c):
    return _cat(c)[0] == "N"


def _is_LM(c):
    return _cat(c)[0] in "LM"


def _is_PS(c):
    return _cat(c)[0] in "PS"


def _is_ws(c):
    # Oniguruma \s (Unicode): TAB..CR, space, NEL, Zs, LINE/PARAGRAPH SEPARATOR
    return c in "\t\n\x0b\x0c\r \x85\u2028\u2029" or _cat(c) == "Zs"


def _is_cjk(c):
    o = ord(c)
    return 0x4E00 <= o <= 0x9FA5 or 0x3040 <= o <= 0x309F or 0x30A0 <= o <= 0x30FF


ASCII_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _is_ascii_letter(c):
    return ("A" <= c <= "Z") or ("a" <= c <= "z")


def _split_isolated(pieces, match_at):
    """Apply an Isolated split: match_at(s, i) -> end or None (leftmost-first)."""
    out = []
    for s in pieces:
        i = 0
        last = 0
        n = len(s)
        while i < n:
            e = match_at(s, i)
            if e is None:
                i += 1
                continue
            if i > last:
                out.append(s[last:i])
            out.append(s[i:e])
            i = last = e
        if last < n:
            out.append(s[last:])
    return out


def _m_digits(s, i):
    if not _is_N(s[i]):
        return None
    j = i
    while j < len(s) and j - i < 3 and _is_N(s[j]):
        j += 1
    return j


def _m_cjk(s, i):
    if not _is_cjk(s[i]):
        return None
    j = i
    while j < len(s) and _is_cjk(s[j]):
        j += 1
    return j


def _m_main(s, i):
    n = len(s)
    c = s[i]
    # 1: [ascii punct][A-Za-z]+
    if c in ASCII_PUNCT and i + 1 < n and _is_ascii_letter(s[i + 1]):
        j = i + 1
        while j < n and _is_ascii_letter(s[j]):
            j += 1
        return j
    # 2: [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
    opt = c not in "\r\n" and _cat(c)[0] not in "LPS"
    start = None
    if opt and i + 1 < n and _is_LM(s[i + 1]):
        start = i + 1
    elif _is_LM(c):
        start = i
    if start is not None:
        j = start
        while j < n and _is_LM(s[j]):
            j += 1
        return j
    # 3: ' '?[\p{P}\p{S}]+[\r\n]*
    start = None
    if c == " " and i + 1 < n and _is_PS(s[i + 1]):
        start = i + 1
    elif _is_PS(c):
        start = i
    if start is not None:
        j = start
        while j < n and _is_PS(s[j]):
            j += 1
        while j < n and s[j] in "\r\n":
            j += 1
        return j
    if _is_ws(c):
        j = i
        while j < n and _is_ws(s[j]):
            j += 1
        # 4: \s*[\r\n]+  -> ends after the last CR/LF of the whitespace run
        last_nl = None
        for k in range(i, j):
            if s[k] in "\r\n":
                last_nl = k
        if last_nl is not None:
            return last_nl + 1
        # 5: \s+(?!\S)
        if j == n:
            return j
        if j - i >= 2:
            return j - 1
        # 6: \s+
        return j
    return None


def pre_tokenize(text):
    """R1 pre-tokenizer (without the ByteLevel mapping): list of pieces."""
    pieces = _split_isolated([text], _m_digits)
    pieces = _split_isolated(pieces, _m_cjk)
    pieces = _split_isolated(pieces, _m_main)
    return pieces


# ---------------------------------------------------------------- training

def train(texts, n_merges, min_freq, no_digit_merges=True):
    """Classic BPE on pre-tokenized pieces. Ties: highest count, then the
    lexicographically smallest pair. Returns a list of (a, b) merges."""
    words = {}
    for t in texts:
        for part, is_added in split_added(t):
            if is_added:
                continue
            for p in pre_tokenize(part):
                if no_digit_merges and all(_is_N(ch) for ch in p):
                    continue
                w = to_byte_chars(p)
                words[w] = words.get(w, 0) + 1
    seqs = [[list(w), f] for w, f in sorted(words.items())]
    merges = []
    while len(merges) < n_merges:
        counts = {}
        for sym, f in seqs:
            for k in range(len(sym) - 1):
                pr = (sym[k], sym[k + 1])
                counts[pr] = counts.get(pr, 0) + f
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < min_freq:
            break
        a, b = best[0]
        merges.append((a, b))
        ab = a + b
        for item in seqs:
            sym = item[0]
            if len(sym) < 2:
                continue
            out = []
            k = 0
            while k < len(sym):
                if k + 1 < len(sym) and sym[k] == a and sym[k + 1] == b:
                    out.append(ab)
                    k += 2
                else:
                    out.append(sym[k])
                    k += 1
            item[0] = out
    return merges


def build_tokenizer_json(merges):
    vocab = {BYTE_TO_CHAR[b]: b for b in range(256)}
    for a, b in merges:
        s = a + b
        if s not in vocab:
            vocab[s] = len(vocab)
    added = []
    for content, special, normalized in ADDED_TOKENS:
        added.append({"id": len(vocab) + len(added), "content": content, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": normalized, "special": special})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": NORMALIZER,
        "pre_tokenizer": PRE_TOKENIZER,
        "post_processor": POST_PROCESSOR,
        "decoder": DECODER,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "vocab": vocab,
            "merges": ["%s %s" % m for m in merges],
        },
    }


def tokenizer_config():
    def tok(c):
        return {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": tok(ADDED_TOKENS[0][0]),
        "eos_token": tok(ADDED_TOKENS[1][0]),
        "pad_token": tok(ADDED_TOKENS[1][0]),
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": 1024,
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }


# ---------------------------------------------------------------- encoding

ADDED_CONTENTS = [c for c, _, _ in ADDED_TOKENS]


def split_added(text, contents=ADDED_CONTENTS):
    """Split on added-token contents (leftmost, longest). Yields (str, is_added)."""
    out = []
    i = 0
    last = 0
    n = len(text)
    while i < n:
        best = None
        for c in contents:
            if text.startswith(c, i) and (best is None or len(c) > len(best)):
                best = c
        if best is None:
            i += 1
            continue
        if i > last:
            out.append((text[last:i], False))
        out.append((best, True))
        i = last = i + len(best)
    if last < n:
        out.append((text[last:], False))
    return out


class Tokenizer:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        m = tj["model"]
        self.vocab = m["vocab"]
        self.ranks = {}
        for r, s in enumerate(m["merges"]):
            a, b = s.split(" ") if isinstance(s, str) else s
            self.ranks[(a, b)] = r
        self.added = {t["content"]: t["id"] for t in tj["added_tokens"]}
        self.id_to_tok = {i: s for s, i in self.vocab.items()}
        for c, i in self.added.items():
            self.id_to_tok[i] = c
        self.size = max(self.id_to_tok) + 1
        self.cache = {}

    def token_id(self, s):
        return self.added[s] if s in self.added else self.vocab[s]

    def _bpe(self, w):
        if w in self.cache:
            return self.cache[w]
        sym = list(w)
        while len(sym) > 1:
            best = None
            for k in range(len(sym) - 1):
                r = self.ranks.get((sym[k], sym[k + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, k)
            if best is None:
                break
            k = best[1]
            sym[k:k + 2] = [sym[k] + sym[k + 1]]
        ids = [self.vocab[s] for s in sym]
        self.cache[w] = ids
        return ids

    def encode(self, text):
        ids = []
        for part, is_added in split_added(text, list(self.added)):
            if is_added:
                ids.append(self.added[part])
                continue
            for p in pre_tokenize(part):
                ids.extend(self._bpe(to_byte_chars(p)))
        return ids

    def decode(self, ids, skip_special=False):
        out = bytearray()
        for i in ids:
            s = self.id_to_tok[i]
            if s in self.added:
                if not skip_special:
                    out += s.encode("utf-8")
            else:
                out += bytes(CHAR_TO_BYTE[c] for c in s)
        return out.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- CLI

def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf"))
    t.add_argument("--n", type=int, default=20000, help="training examples to learn merges from")
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument("--merges", type=int, default=1000)
    t.add_argument("--min-freq", type=int, default=20)
    e = sub.add_parser("encode")
    e.add_argument("tokenizer")
    e.add_argument("text")
    args = ap.parse_args()
    if args.cmd == "encode":
        tok = Tokenizer(args.tokenizer)
        print(tok.encode(args.text))
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import data
    texts = [data.text_of(ex) for ex in data.generate(args.n, args.seed, "train")]
    merges = train(texts, args.merges, args.min_freq)
    tj = build_tokenizer_json(merges)
    # structure check against the real R1 file, committed in the repository's test data
    r1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "data",
                      "tokenizer", "tokenizer.json")
    if os.path.exists(r1):
        with open(r1, encoding="utf-8") as f:
            ref = json.load(f)
        for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
            assert ref[k] == tj[k], k
        refadded = {a["content"]: a for a in ref["added_tokens"]}
        for a in tj["added_tokens"]:
            r = refadded[a["content"]]
            assert all(r[f] == a[f] for f in ("special", "normalized", "lstrip", "rstrip", "single_word")), a
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(), f, ensure_ascii=False, indent=2)
    print("merges %d, regular vocab %d, added %d, total ids %d" % (
        len(merges), len(tj["model"]["vocab"]), len(tj["added_tokens"]),
        len(tj["model"]["vocab"]) + len(tj["added_tokens"])))


if __name__ == "__main__":
    main()
