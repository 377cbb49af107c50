#!/usr/bin/env python3
"""Write the golden files the Go tokenizer is tested against, from Hugging Face tokenizers.

testdata/golden.jsonl: for line i of testdata/corpus.jsonl, line i holds
    {"ids": [...], "type_ids": [...],  # no truncation
     "ids128": [...],                  # enable_truncation(max_length=128)
     "ids256": [...]}                  # enable_truncation(max_length=256)
from Tokenizer.from_file on the committed fixture with its own truncation and padding
disabled, encoding with add_special_tokens=True. Truncated type ids are not stored: the
script checks they are the template's (the full encoding's first len-1 type ids and its
last), which is what the Go tests derive.

testdata/golden_variants.jsonl: one line {"variant": name, "line": i, "ids": [...]} per
variant and corpus line of at most VARIANT_MAX_CHARS characters that is among the first
VARIANT_ALL_LINES (the hand-written ones) or holds a character outside printable ASCII. A variant is the fixture
with its normalizer options changed (VARIANTS) and its vocabulary extended by
testdata/extra_vocab.json. The fixture's uncased English vocabulary turns most non-Latin
words into [UNK] whatever their normalization, which would hide normalization bugs; the
extra vocabulary holds every character the corpus can normalize to, alone and with the
"##" prefix (ids from the fixture's vocabulary size up, in file order), so that every
normalized character shows in the ids.

Usage (from the repository root, with tools/requirements.txt installed):
    python tools/tokenize/golden.py
The output is deterministic.
"""

import argparse
import json

import tokenizers
from tokenizers import Tokenizer, normalizers

LIMITS = (128, 256)
VARIANT_MAX_CHARS = 300
VARIANT_ALL_LINES = 400
# Normalizer options of the variants; parity_test.go must list the same ones.
VARIANTS = {
    "uncased": {"clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
    "cased": {"clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": False},
    "strip-only": {"clean_text": False, "handle_chinese_chars": False, "strip_accents": True, "lowercase": False},
    "lower-keep-accents": {"clean_text": True, "handle_chinese_chars": False, "strip_accents": False, "lowercase": True},
}
TESTDATA = "internal/tokenize/testdata/"


def read_corpus(path):
    # Split on "\n" only: texts are JSON-escaped, but may hold U+2028 and friends raw.
    with open(path, encoding="utf-8", newline="") as f:
        return [json.loads(line)["text"] for line in f.read().split("\n") if line]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")


def golden(tok, texts):
    tok.no_padding()
    rows = [{} for _ in texts]
    for limit in (None,) + LIMITS:
        if limit is None:
            tok.no_truncation()
        else:
            tok.enable_truncation(max_length=limit)
        suffix = "" if limit is None else str(limit)
        for row, text in zip(rows, texts):
            enc = tok.encode(text, add_special_tokens=True)
            row["ids" + suffix] = enc.ids
            if limit is None:
                row["type_ids"] = enc.type_ids
            else:
                full = row["type_ids"]
                if enc.type_ids != full[: len(enc.ids) - 1] + full[-1:]:
                    raise SystemExit(f"type ids at max_length={limit} are not the template's: {text!r}")
    return rows


def is_printable_ascii(text):
    return all(" " <= c <= "~" for c in text)


def extra_vocab(texts, vocab):
    """Every character a corpus character can normalize to, alone and with "##", not in vocab."""
    nfd, lower = normalizers.NFD(), normalizers.Lowercase()
    chars = set()
    for c in set("".join(texts)):
        for s in (c, nfd.normalize_str(c)):
            chars.update(s)
            chars.update(lower.normalize_str(s))
    extra = []
    for c in sorted(chars):
        for tok in (c, "##" + c):
            if tok not in vocab:
                extra.append(tok)
    return extra


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default=TESTDATA + "minilm-tokenizer.json")
    ap.add_argument("--corpus", default=TESTDATA + "corpus.jsonl")
    ap.add_argument("--out-dir", default=TESTDATA)
    args = ap.parse_args()

    texts = read_corpus(args.corpus)
    rows = golden(Tokenizer.from_file(args.tokenizer), texts)
    write_jsonl(args.out_dir + "golden.jsonl", rows)
    print(f"wrote {len(rows)} lines to golden.jsonl (tokenizers {tokenizers.__version__})")

    with open(args.tokenizer, encoding="utf-8") as f:
        config = json.load(f)
    vocab = config["model"]["vocab"]
    extra = extra_vocab(texts, vocab)
    with open(args.out_dir + "extra_vocab.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(extra, f, ensure_ascii=False, indent=0)
        f.write("\n")
    next_id = max(vocab.values()) + 1
    for i, tok in enumerate(extra):
        vocab[tok] = next_id + i

    out = []
    for name, options in VARIANTS.items():
        config["normalizer"] = {"type": "BertNormalizer", **options}
        tok = Tokenizer.from_str(json.dumps(config))
        tok.no_padding()
        tok.no_truncation()
        for i, text in enumerate(texts):
            if len(text) <= VARIANT_MAX_CHARS and (i < VARIANT_ALL_LINES or not is_printable_ascii(text)):
                out.append({"variant": name, "line": i, "ids": tok.encode(text, add_special_tokens=True).ids})
    write_jsonl(args.out_dir + "golden_variants.jsonl", out)
    print(f"wrote {len(extra)} tokens to extra_vocab.json, {len(out)} lines to golden_variants.jsonl")


if __name__ == "__main__":
    main()
