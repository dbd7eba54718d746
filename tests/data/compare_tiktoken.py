#!/usr/bin/env python3
"""tests/data/compare_tiktoken.py BIN — truthgpt's tokenizer must give tiktoken's ids.

Needs the `tiktoken` package and a tiktoken rank file named by $TG_TIKTOKEN_RANKS (e.g. GPT-2's
r50k_base or cl100k_base); exits 77 (skipped) without them. Encodes random Unicode-heavy strings
and the UTF-8 fortune files (if installed) with GPT-2's pre-split pattern and compares ids."""
import glob, os, random, subprocess, sys

try:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
except ImportError:
    print("skipped: no tiktoken")
    sys.exit(77)
ranks = os.environ.get("TG_TIKTOKEN_RANKS")
if not ranks or not os.path.exists(ranks):
    print("skipped: set TG_TIKTOKEN_RANKS to a tiktoken rank file")
    sys.exit(77)
BIN = sys.argv[1]
GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
enc = tiktoken.Encoding("tg", pat_str=GPT2, mergeable_ranks=load_tiktoken_bpe(ranks), special_tokens={})


def ours(data):
    out = subprocess.run([BIN, "tokenizer", "encode", ranks], input=data, capture_output=True, check=True)
    return [int(x) for x in out.stdout.split()]


random.seed(1)
pool = list(" \t\n\r  \u00a0\u2009\u3000\u200b'sdmtlvre0123456789abcXYZ.,;!?-_()[]{}\"#$%&*+/<=>@\\^`|~") + [
    "é", "ü", "ß", "Ω", "ж", "中", "文", "١", "½", "²", "Ⅻ", "😀", "👍🏽", "e\u0301", "\u0301", "ﬁ", "ǅ",
    "ʰ", "々", "\U0001d7d8", "\ufeff", "\u2028", "\x0b", "\x0c", "\x1c", "\x85"]
bad = cases = 0
for _ in range(200):
    s = "".join(random.choice(pool) for _ in range(random.randint(0, 60)))
    cases += 1
    if ours(s.encode()) != enc.encode_ordinary(s):
        bad += 1
        print("MISMATCH", repr(s))
for f in sorted(glob.glob("/usr/share/games/fortunes/*.u8"))[:10]:
    data = open(f, "rb").read()
    cases += 1
    if ours(data) != enc.encode_ordinary(data.decode("utf-8")):
        bad += 1
        print("MISMATCH", f)
print(f"{cases - bad} passed, {bad} failed")
sys.exit(1 if bad else 0)
