#!/usr/bin/env python3
"""A small T5 tokenizer for the tests, made the way T5's own is: a SentencePiece unigram model
(trained here on a committed corpus, since google/t5-v1_1-xxl's spiece.model cannot be
fetched from the package registries), then transformers' T5Tokenizer with its 100
<extra_id_N> tokens, converted to T5TokenizerFast's tokenizer.json by transformers' own
converter — the same route that wrote FLUX.1's tokenizer_2/tokenizer.json, so the file has
the real one's structure: normalizer Sequence [Precompiled (SentencePiece's nmt_nfkc charsmap),
Strip right, Replace " {2,}" -> "▁"], Metaspace pre-tokenizer, Unigram model (unk 2, no byte
fallback), TemplateProcessing appending </s>, Metaspace decoder. As FLUX.1's tokenizer_2
(tokenizer_config.json "legacy": false) it is converted with legacy=False, so the
pre-tokenizer prepends "▁" to the first split only (prepend_scheme "first": text right after
an added token such as "a</s>b" gets no "▁"), and the two Metaspace entries are written in the
form the real file has them (tokenizers 0.15's: "add_prefix_space": true plus
"prepend_scheme", no "split"; pre-tokenizer "first", decoder "always"), checked to give the
converter's own ids. The charsmap is sentencepiece 0.2.1's nmt_nfkc table, not byte-equal to
the 2019 one in T5's spiece.model. Then golden.json: the ids T5TokenizerFast gives for a set
of prompts, called as diffusers' FluxPipeline calls it (padding="max_length",
truncation=True, add_special_tokens=True), here with max_length 32; the `tokenizers` library
(what the Rust crate is) given the same file with enable_truncation(max_length=32) and
enable_padding(length=32, pad_id=0, pad_token="<pad>") must give the same ids (else this fails).
No spiece.model is kept: the training below is deterministic (one thread, no shuffling), and
the model would be 240 KB (it holds the charsmap too).

Pinned (tested): sentencepiece==0.2.1, transformers==4.57.6, tokenizers==0.22.2,
protobuf==7.36.2 (the Rust side reads the file with the tokenizers crate 0.22.2).
Run from this folder: python3 make_t5_tokenizer.py   (writes tokenizer.json, golden.json;
byte-identical on every run)
"""
import json
import os
import tempfile

import sentencepiece as spm
import tokenizers
import transformers
from transformers import T5Tokenizer, T5TokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_LENGTH = 32

CORPUS = """
A news presenter in a blue studio reads the evening headlines.
A portrait of a smiling woman with short dark hair, soft light, 35mm photograph.
An old man with a grey beard in a red sweater, looking at the camera.
The weather presenter stands in front of a map of the coast, wearing a green jacket.
Studio lighting, shallow depth of field, highly detailed, photorealistic portrait.
A young reporter outside the city hall at night, rain on the street, neon signs.
Good evening, here is the news at the top of the hour.
The quick brown fox jumps over the lazy dog.
A close-up of a presenter's face, neutral expression, plain background.
Bright morning show set with yellow sofas and a window onto the harbour.
Two anchors at a glass desk, a screen behind them shows the stock market.
A man in a navy suit and white shirt, tie loosened, late night talk show.
A woman with curly red hair and freckles, wearing glasses, library background.
Cinematic lighting, film grain, warm tones, medium shot of a television host.
Sports desk with a large screen showing football highlights and scores.
"""


def train(workdir):
    corpus = os.path.join(workdir, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(CORPUS.strip() + "\n")
    prefix = os.path.join(workdir, "spiece")
    # T5's ids: <pad>=0, </s>=1, <unk>=2; no <s>; unigram; no byte fallback.
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, model_type="unigram", vocab_size=170,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", character_coverage=1.0, byte_fallback=False,
        num_threads=1, seed_sentencepiece_size=100000, shuffle_input_sentence=False,
        minloglevel=2)
    return prefix + ".model"


PROMPTS = [
    "a news presenter in a blue studio",
    "A Portrait Of A Smiling Woman, soft light.",
    "an old man with a grey beard; 35mm photograph!",
    "  leading and trailing spaces  ",
    "multiple    spaces\tand a tab\nand a newline",
    "numbers 12345 and 3.14 and 1,000,000",
    "café, naïve, über, Ærøskøbing",
    "東京の夜、ネオンの看板",
    "a presenter 🎤 with a microphone 📺",
    "text with </s> inside and <pad> too",
    "<extra_id_0> masked",
    "UPPERCASE HEADLINE NEWS",
    "",
    " ",
    "zzqx unknownish wordz",
    "The weather presenter stands in front of a map of the coast, wearing a green jacket, "
    "while the screen behind shows rain moving in from the sea over the harbour and hills.",
    "hyphen-ated and under_scored and slash/ed",
    "quotes \"double\" and 'single' and `back`",
    # Text right after an added token: no "▁" with prepend_scheme "first" (FLUX.1's file).
    "<extra_id_0>masked",
    "a</s>b",
    "x<pad>y z",
    # NFKC through the charsmap: full-width letters and digits, a ligature, a combining accent.
    "ＡＢＣ１２３ ﬁne cafe\u0301",
    "\n",
]


def main():
    with tempfile.TemporaryDirectory() as workdir:
        model = train(workdir)
        converted = {}
        for legacy in (False, True):
            slow = T5Tokenizer(vocab_file=model, extra_ids=100, legacy=legacy)
            fast = T5TokenizerFast(__slow_tokenizer=slow, vocab_file=None, extra_ids=100,
                                   legacy=legacy, from_slow=True)
            out = os.path.join(workdir, f"legacy_{legacy}")
            fast.save_pretrained(out)
            converted[legacy] = T5TokenizerFast(
                tokenizer_file=os.path.join(out, "tokenizer.json"), extra_ids=100)
        with open(os.path.join(workdir, "legacy_False", "tokenizer.json")) as f:
            doc = json.load(f)
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
            "split": True}
    if doc["pre_tokenizer"] != meta or doc["decoder"] != meta:
        raise SystemExit(f"the converter's Metaspace changed: {doc['pre_tokenizer']}, "
                         f"{doc['decoder']}")
    # As FLUX.1's tokenizer_2/tokenizer.json writes them (tokenizers 0.15's serialization).
    doc["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                            "add_prefix_space": True, "prepend_scheme": "first"}
    doc["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True,
                      "prepend_scheme": "always"}
    path = os.path.join(HERE, "tokenizer.json")
    # Written deterministically (the converter's key order, indent 2 as transformers writes).
    with open(path, "w") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)
        f.write("\n")
    tok = T5TokenizerFast(tokenizer_file=path, extra_ids=100)
    raw = tokenizers.Tokenizer.from_file(path)
    raw.enable_truncation(max_length=MAX_LENGTH)
    raw.enable_padding(length=MAX_LENGTH, pad_id=0, pad_token="<pad>")
    plain = tokenizers.Tokenizer.from_file(path)
    cases, disagree, always_differs = [], [], []
    for p in PROMPTS:
        ids = tok(p, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                  add_special_tokens=True).input_ids
        unpadded = tok(p, add_special_tokens=True).input_ids
        if raw.encode(p, add_special_tokens=True).ids != ids:
            disagree.append(("padded", p))
        if plain.encode(p, add_special_tokens=True).ids != unpadded:
            disagree.append(("unpadded", p))
        if converted[False](p).input_ids != unpadded:
            disagree.append(("the converter's own file", p))
        if converted[True](p).input_ids != unpadded:
            always_differs.append(p)
        cases.append({"prompt": p, "ids": ids, "ids_unpadded": unpadded,
                      "pieces": tok.convert_ids_to_tokens(unpadded)})
    if disagree:
        raise SystemExit(f"ids disagree with T5TokenizerFast's: {disagree}")
    norm = doc["normalizer"]
    golden = {
        "max_length": MAX_LENGTH, "pad": 0, "eos": 1, "unk": 2,
        "vocab_size": raw.get_vocab_size(),
        "call": "T5TokenizerFast(tokenizer_file)(prompt, padding='max_length', "
                "max_length=32, truncation=True, add_special_tokens=True), as FluxPipeline",
        "structure": {
            "normalizer": norm["type"] if norm else None,
            "pre_tokenizer": doc["pre_tokenizer"]["type"],
            "model": doc["model"]["type"],
            "post_processor": doc["post_processor"]["type"],
            "decoder": doc["decoder"]["type"],
            "pre_tokenizer_prepend_scheme": doc["pre_tokenizer"]["prepend_scheme"],
        },
        "legacy_true_differs": always_differs,
        "versions": {"sentencepiece": spm.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "cases": cases,
    }
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"tokenizer.json {os.path.getsize(path)} bytes, vocabulary {raw.get_vocab_size()}; "
          f"golden.json: {len(cases)} prompts; structure {golden['structure']}")


if __name__ == "__main__":
    main()
