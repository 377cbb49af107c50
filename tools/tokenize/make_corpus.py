#!/usr/bin/env python3
"""Write internal/tokenize/testdata/corpus.jsonl, the parity corpus of the Go tokenizer.

One JSON object {"text": ...} per line, so texts may hold newlines, tabs and control
characters. The corpus mixes hand-written lines aimed at specific behaviours (accents,
scripts, emoji, control and zero-width characters, special-token literals, word-length
limits, truncation boundaries) with seeded programmatic ones: English-like sentences,
mixed-script text, words built from vocabulary pieces, random code-point soup and
texts of thousands of words. Nothing is downloaded; the only input is the committed
tokenizer fixture, used for its vocabulary.

Usage (from the repository root):
    python tools/tokenize/make_corpus.py [--seed 20240611] [-o internal/tokenize/testdata/corpus.jsonl]
The output is a pure function of the seed and the fixture.
"""

import argparse
import json
import random

FIXTURE = "internal/tokenize/testdata/minilm-tokenizer.json"

WORDS = """
the of and to in is was for on that with as by at from his her it an were are which this be
or have had not but one all their there been they has who its two new more after other first
also some time into only over about most when years would people many these can world such
state then during made city later out united under year between three may government school
national where before part both since while well known use number called used through being
same several against team season like including series found early around high four film
british public however second long each area history became local life war north five south
general music family based until group work small did end best won john major held than
development common following century west often back within own any system north president
language last because another large among due population city play set day left without into
university country every york even served great west game led town began university power
model sentence embedding vector search query document token tokenizer network neural learning
data training inference server latency throughput batch request response cache memory index
running jumped quickly happily unbelievable misunderstanding internationalization
reconfiguration electroencephalography antidisestablishmentarianism floccinaucinihilipilification
""".split()

PUNCT = list(".,;:!?-()[]{}'\"/\\@#$%^&*_+=<>|~`") + ["...", "--", "—", "–", "…", "«", "»", "„", "“", "”", "‘", "’", "¿", "¡", "·", "•", "§", "¶", "†", "‰", "′", "″"]

SCRIPTS = {
    "latin_accents": "café naïve Ångström façade coöperate jalapeño résumé Zürich São Paulo Škoda Łódź Dvořák Ørsted Þór straße Œuvre æsir İstanbul ıspanak ǅemal ﬁnance ﬂow".split(),
    "vietnamese": "Tiếng Việt có dấu thanh điệu phức tạp: ắ ằ ẳ ẵ ặ ấ ầ ẩ ẫ ậ ế ề ể ễ ệ ố ồ ổ ỗ ộ ớ ờ ở ỡ ợ ứ ừ ử ữ ự Nguyễn Hưng Đạo".split(),
    "chinese": "我们 今天 去 北京 看 长城 机器学习 自然语言处理 向量 检索 服务器 中华人民共和国 繁體中文 測試 龍 龜 𠀀 𪚥 𫝀".split(),
    "japanese": "こんにちは 世界 カタカナ ひらがな 東京都 ラーメン を 食べました ｶﾀｶﾅ ゔ ヷ ㋿".split(),
    "korean": "안녕하세요 세계 한국어 자연어 처리 서울특별시 ᄀᄁ ᅡᅢ ᆨᆩ 똠방각하 〮 〯".split(),
    "arabic": "مرحبا بالعالم اللغة العربية الذكاء الاصطناعي بِسْمِ اللَّهِ الرَّحْمَٰنِ ١٢٣ ؟ ، ﷺ ﻻ".split(),
    "hebrew": "שלום עולם עִבְרִית בְּרֵאשִׁית תל־אביב".split(),
    "devanagari": "नमस्ते दुनिया हिन्दी भाषा क्षत्रिय ज्ञान ॐ १२३ क़ ड़".split(),
    "thai": "สวัสดีชาวโลก ภาษาไทย กรุงเทพมหานคร ๑๒๓".split(),
    "cyrillic": "Привет мир Русский язык Ёлка ЁЖИК Україна Ґанок Ђорђе Ѣ".split(),
    "greek": "Γειά σου κόσμε Ελληνικά ΣΊΣΥΦΟΣ ὅτι ᾠδή ΐ ΰ ; ·".split(),
    "emoji": ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "❤️", "🤷🏻‍♀️", "🥰", "🫠", "🧑🏿‍🚀", "☕", "⚡", "1️⃣", "©️", "🐈‍⬛", "🦀"],
    "symbols": "∀x∈ℝ: x²≥0 ∑ ∫ √2 ≈ 1.414 ℃ ™ ® © € £ ¥ ₹ ₿ ½ ¾ ⅓ Ⅻ ① ⑳ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 ＦＵＬＬＷＩＤＴＨ ﬀ ﬃ ǈ ǉ".split(),
    "rare_scripts": "ᎠᏍᎦᏯ ⴰⵣⵓⵍ ܫܠܡܐ ދިވެހި ሰላም ᠮᠣᠩᠭᠣᠯ ꦲꦏ꧀ꦱꦫ ᬅᬓ᭄ᬱᬭ 𞤀𞤣𞤤𞤢𞤥 𞤀𞥊𞥄 ⰀⰁⰂ".split(),
}

# Characters that clean_text drops or turns into spaces, zero-width characters, odd spaces.
SPECIAL_CHARS = [
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f",
    "\t", "\r", "\n", "\r\n", "\u00a0", "\u00ad", "\u1680", "\u2000", "\u2007", "\u200a", "\u200b",
    "\u200c", "\u200d", "\u200e", "\u200f", "\u2028", "\u2029", "\u202f", "\u205f", "\u2060",
    "\u3000", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\ue000", "\U000f0000", "\U0010fffd",
    "\U000e0041", "\U000e007f", "\u061c", "\u180e", "\U0001d173",
]

SPECIAL_TOKEN_LINES = [
    "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[CLS] hello [SEP]", "hello[SEP]world",
    "[cls] is lowercase and not special", "[Cls] [sep] [MASK]", "[[CLS]]", "[CLS][CLS][SEP][SEP]",
    "a[MASK]b", "The capital of France is [MASK].", "[CLS", "CLS]", "[ CLS ]", "[CLS ]",
    "[MASK][MASK][MASK]", "[UNK] means unknown", "[PAD][PAD] padding", "x [SEP] y [SEP] z",
    "\u00e9[SEP]\u00e9", "[CLS]\u0301 accent after a special token", "\u4e2d[MASK]\u6587",
    "[SEP]\n[SEP]\t[SEP]", " [CLS] ", "[unused0] [unused1]", "[ＣＬＳ] fullwidth brackets",
]

HAND = [
    "", " ", "  ", "\t", "\n", "\r\n", " \t\n\r ", "\u00a0", "\u3000\u3000", "\u2028", "\u200b",
    "\u200b\u200c\u200d\ufeff\u2060", "\x00", "\x00\x01\x7f", "\u00ad", "a", "A", ".", "...", "?!",
    "Hello, world!", "Hello world", "HELLO WORLD", "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "It's a beautiful day, isn't it? Yes -- it really is!",
    "Dr. Smith's patients (aged 18-65) reported a 23.5% improvement; p<0.001.",
    "I paid $1,234.56 for 3 items on 2024-06-11 at 10:30am (UTC+02:00).",
    "Call +1 (555) 123-4567 or email john.doe+tag@example.co.uk today.",
    "Visit https://www.example.com/path/to/page?query=1&lang=en#section for details.",
    "ftp://files.example.org/pub/data_2023.tar.gz and http://localhost:8080/api/v1/embed",
    "user@domain.com, first.last@sub.domain.io; admin@127.0.0.1",
    "C++ and C# are languages; so are F#, Objective-C and Go (golang).",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "def f(x): return x**2 + 3*x - 1  # comment",
    "{\"key\": \"value\", \"list\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "3.14159265358979323846264338327950288419716939937510",
    "1,000,000 1.000.000 1 000 000 10^6 1e6 0x1F 0b1010 007",
    "café naïve Ångström résumé coöperate",
    "CAFÉ NAÏVE ÅNGSTRÖM RÉSUMÉ",
    "cafe\u0301 nai\u0308ve A\u030angstro\u0308m",
    "e\u0301\u0301\u0301 a\u0300\u0301\u0302\u0303\u0304 o\u0328\u0301 (stacked combining marks)",
    "\u0301\u0302 leading combining marks",
    "Tiếng Việt: Nguyễn Thị Minh Khai, Hồ Chí Minh, phở bò tái, bánh mì ổ",
    "Thư viện này hỗ trợ tiếng Việt với các dấu chồng như ặ, ệ, ộ, ự.",
    "İstanbul ISTANBUL istanbul ıi İI",
    "Straße STRASSE ß ẞ",
    "ﬁ ﬂ ﬀ ﬃ ﬄ ﬅ ﬆ ligatures",
    "ǅ ǆ Ǆ ǈ ǉ ǋ ǌ digraphs",
    "Ⅰ Ⅱ Ⅻ ⅰ ⅻ roman numerals ① ② ⑳",
    "ＦＵＬＬＷＩＤＴＨ ｆｕｌｌｗｉｄｔｈ １２３ ！？",
    "𝐇𝐞𝐥𝐥𝐨 𝕎𝕠𝕣𝕝𝕕 𝓈𝒸𝓇𝒾𝓅𝓉",
    "我爱自然语言处理。",
    "今天天气很好，我们去公园散步吧！",
    "中华人民共和国成立于1949年10月1日。",
    "日本語のテキストです。カタカナとひらがな、そして漢字。",
    "東京スカイツリーは634メートルです",
    "ｱｲｳｴｵ ﾊﾟﾋﾟﾌﾟ halfwidth katakana",
    "한국어 텍스트입니다. 안녕하세요!",
    "서울특별시 강남구 테헤란로 123",
    "ᄒᆞᆫ글 옛한글 ᄀᆞᆷ",
    "مرحبا بالعالم! كيف حالك؟",
    "بِسْمِ ٱللَّهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ",
    "שלום עולם! מה שלומך?",
    "בְּרֵאשִׁית בָּרָא אֱלֹהִים",
    "नमस्ते दुनिया! आप कैसे हैं?",
    "क्षत्रिय ज्ञान श्री",
    "สวัสดีครับ ยินดีที่ได้รู้จัก",
    "Привет, мир! Как дела?",
    "ЁЛКА ёлка Ёж",
    "Γειά σου Κόσμε! Τι κάνεις;",
    "ΣΊΣΥΦΟΣ σίσυφος ὀδυσσεύς ᾠδή",
    "😀😃😄😁😆😅😂🤣",
    "I love it 😍👍🏽👍🏿 so much!!!",
    "Family: 👨‍👩‍👧‍👦 couple: 👩‍❤️‍👨 astronaut: 🧑🏿‍🚀",
    "Flags: 🇺🇸 🇬🇧 🇯🇵 🇫🇷 🏳️‍🌈 🏴‍☠️ 🏴󠁧󠁢󠁥󠁮󠁧󠁿",
    "Keycaps: 1️⃣ 2️⃣ #️⃣ *️⃣",
    "Newer emoji: 🥰 🫠 🫶 🪿 🩷",
    "tab\tseparated\tvalues\there",
    "line one\nline two\r\nline three\rline four",
    "null\x00byte and bell\x07 and escape\x1b[31mred\x1b[0m",
    "del\x7fete and c1\x85control\x9f",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060wj",
    "soft\u00adhyphen\u00adated",
    "non\u00a0breaking\u00a0space and ideographic\u3000space",
    "line\u2028separator and paragraph\u2029separator",
    "narrow\u202fnbsp medium\u205fmath en\u2002em\u2003thin\u2009hair\u200a",
    "ogham\u1680space and mongolian\u180evowel",
    "replacement \ufffd char and noncharacters \ufffe \uffff",
    "private use \ue000\uf8ff \U000f0000 \U0010fffd",
    "bidi \u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069 marks",
    "hel\x00lo wor\u200bld",
    "x" * 99,
    "x" * 100,
    "x" * 101,
    "y" * 250,
    "é" * 100,
    "é" * 101,
    "e\u0301" * 60,
    "e\u0301" * 101,
    "中" * 150,
    "a" * 99 + "é",
    "a" * 100 + "é",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Lopado­temacho­selacho­galeo­kranio­leipsano­drim­hypo­trimmato­silphio­karabo­melito­katakechy­meno­kichl­epi­kossypho­phatto­perister­alektryon­opte­kephallio­kigklo­peleio­lagoio­siraio­baphe­tragano­pterygon",
    "qwxzv jkqxz zxqvj ✓✗ ⌘⌥ ⎈ 𓀀𓀁 𐀀 ᚠᚢᚦ",
    "𝄞𝅘𝅥𝅮 𝅗𝅥 𝅘𝅥 𝆹𝅥𝅯 musical symbols",
    "𝅘𝅥𝅮𝅯 𝅥𝅘 \U0001d165\U0001d16d\U0001d16e stems and flags",
    "ᬅᬓ᭄ᬱᬭ ᬩᬮᬶ balinese \u1b44 adeg",
    "𞤀𞤣𞤤𞤢𞤥 𞤀\U0001e94a\U0001e944 𞤀\U0001e944\U0001e94a adlam nukta and lengthener",
    "a\u0301\U0001e944\u0300\U0001e94a\u0316 mixed marks",
    "ꦲꦏ꧀ꦱꦫ ꦗꦮ javanese \ua9c0",
    "Ⰰ\U0001e000\U0001e001 glagolitic combining",
    "ᄀ\u302e ᄀ\u302f\u0301 hangul tone marks",
    "\u0915\u094d\u0937 \u0915\u093c virama and nukta",
    "\u08d4\u08e1 arabic small high marks \u0628\u08d4\u064e\u08e1",
    "\u0f73 \u0f75 \u0f81 tibetan vowel signs \u0f40\u0f71\u0f72",
    "\u0340\u0341\u0343\u0344 greek tone marks",
    "\u1ac1 \u1dfa \u0898 newer marks",
    "\U000e0001\U000e0065\U000e006e tag characters",
    "\U0002a6d6 \U0002b820 \U0002ceb0 \U00030000 \U0003134a cjk extensions",
    "\uf900\uf901\ufa0e\ufa2d compatibility ideographs",
    "\U0002f800\U0002fa1d compatibility supplement",
    "\u3400\u4dbf\u9fff\u9fa5 \u2e80\u2f00\u31c0 radicals and strokes",
    "the the the the the",
    "a.b.c.d e-f-g h_i_j k/l/m",
    "'quoted' \"double\" `back` ‘curly’ “curly” «guillemets» „low“",
    "!!!???...,,,;;;:::",
    "$$$ %%% ^^^ &&& *** ((( ))) ___ +++ === ~~~",
    "...hello...world...",
    "e.g. i.e. etc. vs. Mr. Mrs. Ms. Jr. Sr. U.S.A.",
    "#hashtag @mention $TICKER &amp; ~tilde",
    "don't won't can't shouldn't y'all'd've",
    "rock'n'roll O'Brien l'homme d'état",
]


def vocab_pieces(path):
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    heads = sorted(t for t in vocab if t.isalpha() and not t.startswith("##") and len(t) > 1)
    tails = sorted(t[2:] for t in vocab if t.startswith("##") and t[2:].isalpha())
    return heads, tails


def sentence(rng, n):
    words = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.5:
        words[0] = words[0].capitalize()
    out = []
    for w in words:
        out.append(w)
        if rng.random() < 0.12:
            out[-1] += rng.choice([",", ";", ":", " -", "'s", "!"])
    return " ".join(out) + rng.choice([".", "?", "!", "", "..."])


def mixed(rng, n):
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            parts.append(rng.choice(WORDS))
        elif r < 0.7:
            script = rng.choice(sorted(SCRIPTS))
            parts.append(rng.choice(SCRIPTS[script]))
        elif r < 0.85:
            parts.append(rng.choice(PUNCT))
        elif r < 0.93:
            parts.append(str(rng.randrange(0, 10 ** rng.randrange(1, 9))))
        else:
            parts.append(rng.choice(SPECIAL_CHARS))
    seps = [" ", " ", " ", "", "\t", "\n", "\u00a0", "\u3000"]
    out = parts[0]
    for p in parts[1:]:
        out += rng.choice(seps) + p
    return out


def made_up_word(rng, heads, tails):
    w = rng.choice(heads)
    for _ in range(rng.randrange(0, 4)):
        w += rng.choice(tails)
    r = rng.random()
    if r < 0.2:
        w = w.capitalize()
    elif r < 0.3:
        w = w.upper()
    return w


# Code-point ranges for the random soup: weighted toward assigned, interesting areas.
SOUP_RANGES = [
    (0x0000, 0x007F), (0x0080, 0x024F), (0x0250, 0x036F), (0x0370, 0x052F), (0x0590, 0x06FF),
    (0x0700, 0x08FF), (0x0900, 0x0DFF), (0x0E00, 0x0FFF), (0x1000, 0x1FFF), (0x2000, 0x2BFF),
    (0x2E80, 0x33FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA000, 0xABFF), (0xAC00, 0xD7FF),
    (0xE000, 0xFFFF), (0x10000, 0x1FFFF), (0x20000, 0x2FFFF), (0x30000, 0x3FFFF),
    (0xE0000, 0xE01EF), (0xF0000, 0x10FFFF),
]
MARKS = [0x0300, 0x0301, 0x0308, 0x0316, 0x0327, 0x0334, 0x0345, 0x05B0, 0x064E, 0x0651, 0x093C,
         0x094D, 0x0E38, 0x302E, 0x1B44, 0xA9C0, 0x08D4, 0x1DFB, 0x1AC1, 0x1DFA, 0x0F71, 0x0F72,
         0x0F74, 0x0F80, 0x1D165, 0x1D16D, 0x1D16E, 0x1E000, 0x1E944, 0x1E94A, 0x11446, 0x20DD]


def soup(rng, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.3:
            out.append(chr(rng.choice(MARKS)))
        elif r < 0.4:
            out.append(" ")
        else:
            lo, hi = rng.choice(SOUP_RANGES)
            cp = rng.randint(lo, hi)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0xFFFD
            out.append(chr(cp))
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("-o", "--out", default="internal/tokenize/testdata/corpus.jsonl")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    heads, tails = vocab_pieces(FIXTURE)

    lines = list(HAND) + list(SPECIAL_TOKEN_LINES)
    for script in sorted(SCRIPTS):
        words = SCRIPTS[script]
        lines.append(" ".join(words))
        lines.append("".join(words))
    for c in SPECIAL_CHARS:
        lines += [c, f"a{c}b", f"word{c}", f"{c}word", f"hello {c} world"]
    # Truncation boundaries: "hello" is one token, so n words make n+2 tokens.
    for n in list(range(122, 132)) + list(range(250, 260)):
        lines.append(" ".join(["hello"] * n))
        lines.append(" ".join(["hello"] * (n - 1)) + " " + "unbelievable")  # last word splits into pieces
    for _ in range(700):
        lines.append(sentence(rng, rng.choice([1, 2, 3, 5, 8, 12, 20, 30, 45, 60, 90, 140])))
    for _ in range(500):
        lines.append(mixed(rng, rng.randrange(1, 40)))
    for _ in range(300):
        lines.append(" ".join(made_up_word(rng, heads, tails) for _ in range(rng.randrange(1, 25))))
    for _ in range(350):
        lines.append(soup(rng, rng.randrange(1, 60)))
    for _ in range(60):
        # Long words around max_input_chars_per_word, counted after normalization.
        n = rng.randrange(95, 106)
        lines.append(rng.choice(["", "pre ", "[CLS]"]) + "".join(rng.choice("abcdeé\u0301ß中") for _ in range(n)))
    # Long texts, to exercise truncation and the counting of dropped tokens.
    for n in (600, 1500, 3000, 5000):
        lines.append(" ".join(sentence(rng, 15) for _ in range(n // 15)))
    for n in (800, 2500):
        lines.append(mixed(rng, n))

    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for text in lines:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    print(f"wrote {len(lines)} lines to {args.out}")


if __name__ == "__main__":
    main()
