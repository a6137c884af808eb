#!/usr/bin/env python3
"""A small T5 tokenizer for the tests, made the way T5's own is: a SentencePiece unigram model
(trained here on a committed corpus, since google/t5-v1_1-xxl's spiece.model cannot be
fetched from the package registries), then transformers' T5Tokenizer with its 100
<extra_id_N> tokens, converted to T5TokenizerFast's tokenizer.json by transformers' own
converter — the same route that wrote FLUX.1's tokenizer_2/tokenizer.json, so the file has
the real one's structure (Precompiled normalizer, Metaspace pre-tokenizer, Unigram model,
TemplateProcessing appending </s>). Then golden.json: the ids T5TokenizerFast gives for a
corpus of prompts, called as diffusers' FluxPipeline calls it (padding="max_length",
truncation=True, add_special_tokens=True), here with max_length 32.

Pinned (tested): sentencepiece==0.2.1, transformers==4.57.6, tokenizers==0.22.x, protobuf.
Run from this folder: python3 make_t5_tokenizer.py   (writes tokenizer.json, golden.json;
byte-identical on every run)
"""
import json
import os
import shutil
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
]


def main():
    with tempfile.TemporaryDirectory() as workdir:
        model = train(workdir)
        slow = T5Tokenizer(vocab_file=model, extra_ids=100, legacy=True)
        fast = T5TokenizerFast(__slow_tokenizer=slow, vocab_file=None, extra_ids=100,
                               legacy=True, from_slow=True)
        out = os.path.join(workdir, "fast")
        fast.save_pretrained(out)
        shutil.copy(os.path.join(out, "tokenizer.json"), os.path.join(HERE, "tokenizer.json"))
    path = os.path.join(HERE, "tokenizer.json")
    # Rewrite deterministically (sorted keys are not used: the file's own order matters to
    # nothing but diffs; indent as transformers writes it).
    with open(path) as f:
        doc = json.load(f)
    with open(path, "w") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)
        f.write("\n")
    tok = T5TokenizerFast(tokenizer_file=path, extra_ids=100)
    raw = tokenizers.Tokenizer.from_file(path)
    raw.enable_truncation(max_length=MAX_LENGTH)
    raw.enable_padding(length=MAX_LENGTH, pad_id=0, pad_token="<pad>")
    cases, disagree = [], []
    for p in PROMPTS:
        ids = tok(p, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                  add_special_tokens=True).input_ids
        unpadded = tok(p, add_special_tokens=True).input_ids
        mine = raw.encode(p, add_special_tokens=True).ids
        if mine != ids:
            disagree.append(p)
        cases.append({"prompt": p, "ids": ids, "ids_unpadded": unpadded,
                      "pieces": tok.convert_ids_to_tokens(unpadded)})
    if disagree:
        raise SystemExit(f"the tokenizers library disagrees with T5TokenizerFast on {disagree}")
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
        },
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
