#!/usr/bin/env python3
"""Generate internal/tokenize/tables.go from the Hugging Face `tokenizers` library.

The Go tokenizer must agree with `tokenizers` id for id. `tokenizers` does not use one
Unicode version: BertNormalizer's control/accent tests come from the `unicode_categories`
crate, NFD from `unicode-normalization-alignments`, lowercasing and whitespace from Rust's
std. Go's `unicode` package follows none of them exactly, so instead of re-deriving the
properties from a Unicode database this script asks `tokenizers` itself, one code point at a
time, and writes down what it answers:

  cleanDrop, cleanSpace  BertNormalizer(clean_text) removes the rune / turns it into ' '.
  chineseChars           BertNormalizer(handle_chinese_chars) puts spaces around the rune.
  nonSpacingMark         BertNormalizer(strip_accents) removes the rune after NFD.
  preWhitespace          BertPreTokenizer splits on the rune and drops it.
  prePunct               BertPreTokenizer isolates the rune as its own word.
  decompositions         NFD of the rune when it changes (Hangul syllables are left to the
                         algorithm in Go; this script checks the algorithm agrees).
  lowercase              to_lowercase of the rune when it changes.
  combiningClasses       canonical combining class of every rune NFD treats as a
                         non-starter (observed by reordering probes; the values are the
                         Unicode ones, which the stability policy keeps fixed).

Every property is also checked to be a per-rune function (for example that stripping
accents is exactly "NFD, then drop nonSpacingMark"), which is what lets the Go code
normalize one rune at a time.

Usage (from the repository root):
    python tools/tokenize/gen_tables.py [-o internal/tokenize/tables.go]
Takes about half a minute. The output is deterministic.
"""

import argparse
import sys
import unicodedata

import tokenizers
from tokenizers import normalizers, pre_tokenizers

MAX_RUNE = 0x10FFFF
HANGUL_BASE, HANGUL_COUNT = 0xAC00, 11172


def code_points():
    for cp in range(MAX_RUNE + 1):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates are not valid UTF-8; Go rejects them first
            continue
        yield cp


def bert(clean=False, chinese=False, strip=False, lower=False):
    return normalizers.BertNormalizer(
        clean_text=clean, handle_chinese_chars=chinese, strip_accents=strip, lowercase=lower
    )


def hangul_nfd(cp):
    s = cp - HANGUL_BASE
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    out = chr(lead) + chr(vowel)
    if trail != 0x11A7:
        out += chr(trail)
    return out


def probe():
    clean, chinese = bert(clean=True), bert(chinese=True)
    strip, lower = bert(strip=True), bert(lower=True)
    nfd = normalizers.NFD()
    pre = pre_tokenizers.BertPreTokenizer()
    t = {k: [] for k in ("drop", "space", "chinese", "ws", "punct")}
    strip_of, lower_of, nfd_of = {}, {}, {}
    for cp in code_points():
        c = chr(cp)
        r = clean.normalize_str(c)
        if r == "":
            t["drop"].append(cp)
        elif r == " " and c != " ":
            t["space"].append(cp)
        elif r != c:
            sys.exit(f"clean_text maps U+{cp:04X} to {r!r}")
        r = chinese.normalize_str(c)
        if r == f" {c} ":
            t["chinese"].append(cp)
        elif r != c:
            sys.exit(f"handle_chinese_chars maps U+{cp:04X} to {r!r}")
        r = strip.normalize_str(c)
        if r != c:
            strip_of[cp] = r
        r = lower.normalize_str(c)
        if r != c:
            lower_of[cp] = r
        r = nfd.normalize_str(c)
        if r != c:
            nfd_of[cp] = r
        words = [w for w, _ in pre.pre_tokenize_str("a" + c + "b")]
        if words == ["a", "b"]:
            t["ws"].append(cp)
        elif words == ["a", c, "b"]:
            t["punct"].append(cp)
        elif words != ["a" + c + "b"]:
            sys.exit(f"BertPreTokenizer splits a U+{cp:04X} b into {words!r}")
    return t, strip_of, lower_of, nfd_of


def probe_nonstarters(nfd_of):
    """Return {cp: ccc} for every NFD-stable rune that NFD reorders, i.e. a non-starter."""
    nfd = normalizers.NFD()
    out = {}
    for cp in code_points():
        if cp in nfd_of:
            continue
        c = chr(cp)
        # U+0334 has ccc 1 and U+0301 ccc 230: a non-starter moves relative to one of them.
        if nfd.normalize_str(c + "\u0334") == "\u0334" + c or nfd.normalize_str("\u0301" + c) == c + "\u0301":
            ccc = unicodedata.combining(c)
            if ccc == 0:
                sys.exit(f"U+{cp:04X} is a non-starter for tokenizers but has ccc 0 in Python")
            out[cp] = ccc
    # Check the observed order is the numeric one, pairwise over one rune per class.
    first = {}
    for cp, ccc in sorted(out.items()):
        first.setdefault(ccc, cp)
    for c1, a in first.items():
        for c2, b in first.items():
            got = nfd.normalize_str("a" + chr(a) + chr(b))[1:]
            want = chr(a) + chr(b) if c1 <= c2 else chr(b) + chr(a)
            if got != want:
                sys.exit(f"NFD orders U+{a:04X} (ccc {c1}) and U+{b:04X} (ccc {c2}) unexpectedly")
    return out


def check(strip_of, nfd_of):
    """Check the per-rune decomposition assumptions; return HF's non-spacing marks."""
    drop_mn = {cp for cp, r in strip_of.items() if r == "" and cp not in nfd_of}
    for cp in code_points():
        d = nfd_of.get(cp, chr(cp))
        want = "".join(x for x in d if ord(x) not in drop_mn)
        if strip_of.get(cp, chr(cp)) != want:
            sys.exit(f"strip_accents(U+{cp:04X}) is not NFD minus non-spacing marks")
    for i in range(HANGUL_COUNT):
        cp = HANGUL_BASE + i
        if nfd_of.get(cp) != hangul_nfd(cp):
            sys.exit(f"NFD(U+{cp:04X}) is not the Hangul algorithm")
    return sorted(drop_mn)


def ranges(cps):
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def range_table(name, doc, cps):
    rs = ranges(cps)
    r16 = [r for r in rs if r[1] <= 0xFFFF]
    r32 = [r for r in rs if r[0] > 0xFFFF]
    for r in rs:
        if r[0] <= 0xFFFF < r[1]:
            sys.exit("range crosses U+FFFF")  # never happens for these properties
    latin = sum(1 for r in r16 if r[1] <= 0xFF)
    lines = [f"// {line}" for line in doc]
    lines.append(f"var {name} = &unicode.RangeTable{{")
    if r16:
        lines.append("\tR16: []unicode.Range16{")
        lines += [f"\t\t{{0x{lo:04x}, 0x{hi:04x}, 1}}," for lo, hi in r16]
        lines.append("\t},")
    if r32:
        lines.append("\tR32: []unicode.Range32{")
        lines += [f"\t\t{{0x{lo:x}, 0x{hi:x}, 1}}," for lo, hi in r32]
        lines.append("\t},")
    if latin:
        lines.append(f"\tLatinOffset: {latin},")
    lines.append("}")
    return "\n".join(lines)


def go_string(s):
    def esc(c):
        if 0x20 <= ord(c) < 0x7F and c not in '"\\':
            return c
        return f"\\U{ord(c):08x}" if ord(c) > 0xFFFF else f"\\u{ord(c):04x}"

    return '"' + "".join(esc(c) for c in s) + '"'


def rune_map(name, doc, m):
    lines = [f"// {line}" for line in doc]
    lines.append(f"var {name} = []runeString{{")
    lines += [f"\t{{0x{cp:04x}, {go_string(s)}}}," for cp, s in sorted(m.items())]
    lines.append("}")
    return "\n".join(lines)


def ccc_table(m):
    rs = []
    for cp, ccc in sorted(m.items()):
        if rs and rs[-1][1] == cp - 1 and rs[-1][2] == ccc:
            rs[-1][1] = cp
        else:
            rs.append([cp, cp, ccc])
    lines = [
        "// combiningClasses lists, sorted, the runes NFD treats as non-starters and their canonical",
        "// combining class; every other rune is a starter (class 0).",
        "var combiningClasses = []cccRange{",
    ]
    lines += [f"\t{{0x{lo:04x}, 0x{hi:04x}, {ccc}}}," for lo, hi, ccc in rs]
    lines.append("}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="internal/tokenize/tables.go")
    args = ap.parse_args()

    t, strip_of, lower_of, nfd_of = probe()
    mn = check(strip_of, nfd_of)
    nonstarters = probe_nonstarters(nfd_of)
    decomp = {cp: s for cp, s in nfd_of.items() if not HANGUL_BASE <= cp < HANGUL_BASE + HANGUL_COUNT}

    parts = [
        f"// Code generated by tools/tokenize/gen_tables.py from tokenizers {tokenizers.__version__}; DO NOT EDIT.",
        "",
        "package tokenize",
        "",
        'import "unicode"',
        "",
        "// The tables below are read-only. They record what tokenizers answers for each",
        "// code point; see tools/tokenize/gen_tables.py for why they are not taken from Go's",
        "// unicode package.",
        "",
        range_table("cleanDrop", ["cleanDrop holds the runes clean_text removes."], t["drop"]),
        "",
        range_table("cleanSpace", ["cleanSpace holds the runes clean_text replaces with ' '."], t["space"]),
        "",
        range_table(
            "chineseChars", ["chineseChars holds the runes handle_chinese_chars surrounds with spaces."], t["chinese"]
        ),
        "",
        range_table(
            "nonSpacingMark", ["nonSpacingMark holds the runes strip_accents removes after NFD."], mn
        ),
        "",
        range_table(
            "preWhitespace", ["preWhitespace holds the runes BertPreTokenizer splits on and removes."], t["ws"]
        ),
        "",
        range_table(
            "prePunct", ["prePunct holds the runes BertPreTokenizer isolates as one-rune words."], t["punct"]
        ),
        "",
        ccc_table(nonstarters),
        "",
        rune_map(
            "decompositions",
            [
                "decompositions maps, sorted by rune, each rune to its NFD when that differs.",
                "Hangul syllables are decomposed by algorithm instead (see hangulDecompose).",
            ],
            decomp,
        ),
        "",
        rune_map("lowercase", ["lowercase maps, sorted by rune, each rune to its lowercase when that differs."], lower_of),
        "",
    ]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    print(
        f"wrote {args.out}: {len(t['drop'])} drop, {len(t['space'])} space, {len(t['chinese'])} chinese, "
        f"{len(mn)} Mn, {len(t['ws'])} ws, {len(t['punct'])} punct, {len(nonstarters)} non-starters, "
        f"{len(decomp)} decompositions, {len(lower_of)} lowercase",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
