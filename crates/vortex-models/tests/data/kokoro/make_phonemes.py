#!/usr/bin/env python3
"""Writes phonemes.json, the corpus `tests/phonemes.rs` checks `kokoro::phonemes` against.

Pinned: Python 3.11.7 and espeakng-loader==0.2.4 (espeak-ng 1.52.0's libespeak-ng.so and
espeak-ng-data: the wheel Vortex itself fetches, and the one misaki 0.9.4 loads);
`pip install espeakng-loader==0.2.4`. If phonemizer-fork==3.3.2 is installed too, every
entry is also checked against its EspeakBackend configured as misaki configures it. Nothing
random.

Run from anywhere: python3 make_phonemes.py

The pipeline is the reference phonemizer golden.py also uses (misaki 0.9.4 EspeakFallback:
phonemizer-fork 3.3.2's EspeakBackend with preserve_punctuation, with_stress and tie='^',
plus kokoro-onnx 0.6.1's chunker), written out again here so the repository holds it, with
two changes:
- ASCII control characters other than '\\n' and '\\t' become spaces first.
- misaki's british=True table is kept beside the American one (language "en-gb").
espeak-ng is called as phonemizer's EspeakWrapper calls it: the library through ctypes,
espeak_Initialize with the wheel's data folder, the voice phonemizer picks for the language
code, espeak_TextToPhonemes in IPA mode with the U+0361 tie until the text is used up, the
clauses joined by spaces, the tie replaced by '^'.
"""
import ctypes
import json
import re
import sys
from pathlib import Path

import espeakng_loader

HERE = Path(__file__).resolve().parent
ESPEAK_VERSION = "1.52.0"
VOICES = {"en-us": b"gmw/en-US", "en-gb": b"gmw/en"}  # phonemizer's choice for each code

# --- 1. espeak-ng, segment by segment (phonemizer's punctuation handling) ----------------
PUNCT_MARKS = ';:,.!?¡¿—…"«»“”(){}[]'
PUNCT_RE = re.compile(r"(\s*[" + re.escape(PUNCT_MARKS) + r"]+\s*)+")


class Espeak:
    """libespeak-ng from the pinned wheel, called as phonemizer's EspeakWrapper calls it."""

    def __init__(self):
        lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                              ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        data = espeakng_loader.get_data_path().encode()
        assert lib.espeak_Initialize(0x02, 0, data, 0) > 0, "espeak_Initialize failed"
        self.version = lib.espeak_Info(None).decode()
        self.lib = lib
        self.voice = None

    def __call__(self, segment, language):
        if self.voice != language:
            assert self.lib.espeak_SetVoiceByName(VOICES[language]) == 0, language
            self.voice = language
        text = ctypes.pointer(ctypes.c_char_p(segment.encode("utf-8")))
        mode = 0x02 | 0x80 | (ord("\u0361") << 8)  # IPA, tied with U+0361
        clauses = []
        while text.contents.value is not None:
            phonemes = self.lib.espeak_TextToPhonemes(text, 1, mode)
            if phonemes:
                clauses.append(phonemes.decode("utf-8"))
        return " ".join(" ".join(clauses).replace("\u0361", "^").split())


ESPEAK = None


def espeak(segment, language):
    """One segment's IPA: its clauses joined by single spaces."""
    global ESPEAK
    if ESPEAK is None:
        ESPEAK = Espeak()
    return ESPEAK(segment, language)


def clean(text):
    return "".join(" " if (ord(c) < 0x20 and c not in "\n\t") or c == "\x7f" else c
                   for c in text)


def text_to_ipa(text, language):
    text = clean(text).strip()
    out, pos = [], 0
    for m in PUNCT_RE.finditer(text):
        seg = text[pos:m.start()].strip()
        if seg:
            out.append(espeak(seg, language))
        out.append(m.group())        # punctuation run, verbatim (incl. spaces)
        pos = m.end()
    seg = text[pos:].strip()
    if seg:
        out.append(espeak(seg, language))
    return "".join(out).strip()


# --- 2. misaki 0.9.4 misaki/espeak.py EspeakFallback normalization ---------------------
E2M = [  # misaki sorts by key length, longest first; ties keep dict order
    ("ʔˌn\u0329", "ʔn"), ("ʔn\u0329", "ʔn"), ("a^ɪ", "I"), ("a^ʊ", "W"), ("d^ʒ", "ʤ"),
    ("e^ɪ", "A"), ("t^ʃ", "ʧ"), ("ɔ^ɪ", "Y"), ("ə^l", "ᵊl"), ("ʲo", "jo"), ("ʲə", "jə"),
    ("e", "A"), ("ʲ", ""), ("ɚ", "əɹ"), ("r", "ɹ"), ("x", "k"), ("ç", "k"), ("ɐ", "ə"),
    ("ɬ", "l"), ("\u0303", ""),
]
US = [("o^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", "")]
GB = [("e^ə", "ɛː"), ("iə", "ɪə"), ("ə^ʊ", "Q")]
FINAL = [("o", "ɔ"), ("ɾ", "T"), ("ʔ", "t"), ("^", "")]  # version None: ɾ/ʔ replaced


def normalize(ps, language):
    ps = ps.strip()
    for old, new in E2M:
        ps = ps.replace(old, new)
    ps = re.sub("(\\S)\u0329", "ᵊ\\1", ps).replace("\u0329", "")
    for old, new in (GB if language == "en-gb" else US) + FINAL:
        ps = ps.replace(old, new)
    return ps


# --- 3. kokoro-onnx 0.6.1 kokoro_onnx/chunker.py ----------------------------------------
MAX_PHONEME_LENGTH = 510
_BOUNDARIES = (re.compile(r"(?<=[.!?…])\s+"), re.compile(r"(?<=[,;:])\s+"), re.compile(r"\s+"))


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
    for start in range(0, len(ps), limit):
        yield ps[start:start + limit]


def _pack(lengths, limit):
    batches, start, size = [], 0, 0
    for i, n in enumerate(lengths):
        cand = n if i == start else size + 1 + n
        if cand > limit and i > start:
            batches.append((start, i))
            start, size = i, n
        else:
            size = cand
    if lengths:
        batches.append((start, len(lengths)))
    return batches


def split_phonemes(ps, limit=MAX_PHONEME_LENGTH):
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


# --- 4. the whole pipeline ---------------------------------------------------------------
def phonemize(text, language, vocab):
    if not clean(text).strip():
        return {"error": "empty"}
    ipa = text_to_ipa(text, language)
    ps = " ".join(normalize(ipa, language).split())
    kept = "".join(c for c in ps if c in vocab)
    if not any(not c.isspace() and c not in PUNCT_MARKS for c in kept):
        return {"ipa": ipa, "error": "nothing_to_say"}
    return {"ipa": ipa, "phonemes": kept, "tokens": [vocab[c] for c in kept],
            "chunks": split_phonemes(kept)}


PARAGRAPH = (
    "The history of the lighthouse on the northern cape goes back more than two hundred "
    "years. In 1802, a wooden tower was raised on the rocks; it burned down in 1819, and a "
    "stone one replaced it three years later. Keepers lived there with their families, "
    "sometimes for decades, trimming the wicks, polishing the great lens, and writing the "
    "weather into thick leather logbooks. Storms were frequent: one winter, the sea broke "
    "every window on the lower floor, and the keeper's daughter rowed to the village for "
    "help. Today the light is automatic, and the cottages have become a small museum. "
    "Visitors climb the one hundred and twelve steps, look out over the water, and read "
    "the old entries, which record ships, fog, births, and the occasional whale. Some "
    "pages are hard to decipher, because the ink has faded, but volunteers have copied "
    "most of them by hand! Why does a place like this still matter? Perhaps because it "
    "reminds us how much patient, ordinary work kept people safe, long before radar and "
    "satellites. The museum opens at nine in the morning, closes at five, and asks only "
    "for a small donation; children under twelve enter free. If you go, bring a warm "
    "coat, even in summer, since the wind on the cape rarely stops, and the path from the "
    "car park is steep, narrow, and often wet after rain, so good shoes help too. On clear "
    "evenings the guides tell stories about the keepers: the brothers who never spoke, the "
    "cat that rang the bell, and the night in 1887 when the lamp went dark for an hour."
)
RUN_ON = " ".join(["and then the long road went on past the quiet farms"] * 22)

CORPUS = [
    ("hello", "en-us", "Hello world."),
    ("fox", "en-us", "The quick brown fox jumps over the lazy dog."),
    ("numbers", "en-us", "I have 3 apples and 1,234 oranges; that's 42.5% of 2024's crop."),
    ("abbreviations", "en-us",
     "Dr. Smith lives on St. James St., near the U.S.A. border, e.g. Mr. Jones's house."),
    ("curly_quotes_em_dash", "en-us", "She said “hello” — then left…"),
    ("ellipsis_dots", "en-us", "Wait... what?! Really?"),
    ("accents", "en-us", "The café served a naïve crème brûlée."),
    ("accents_names", "en-us", "Jürgen's résumé mentions Zoë and Beyoncé."),
    ("leading_dash", "en-us", "-5 degrees is cold."),
    ("leading_double_dash", "en-us", "--verbose is not an option here"),
    ("clauses_time", "en-us", "He read the book; she will read it tomorrow: at 10:30 a.m."),
    ("brackets", "en-us", "(Parentheses) and [brackets] and {braces}."),
    ("guillemets", "en-us", "«Bonjour», he said."),
    ("inverted_marks", "en-us", "¿Qué? ¡Olé!"),
    ("phone_email", "en-us", "Call 555-0123 or email info@example.com."),
    ("currency", "en-us", "It costs $19.99, or €20 — about £17."),
    ("newlines", "en-us", "Line one\nLine two\n\nParagraph two."),
    ("tabs_spaces", "en-us", "Tabs\tand   multiple    spaces."),
    ("en_dash", "en-us", "Pages 10–20 – roughly half of it."),
    ("flaps_syllabic", "en-us", "A little bottle of water, a cotton button, a mountain."),
    ("diphthongs", "en-us", "Boy, the choir sang a judge's song at the gym; how about that?"),
    ("acronyms_symbols", "en-us", "NASA, the FBI & fish @ 5 o'clock #1"),
    ("control_chars", "en-us", "Hello\x07there\x00friend\r\nbye"),
    ("paragraph", "en-us", PARAGRAPH),
    ("run_on", "en-us", RUN_ON),
    ("gb_colour", "en-gb", "The colour of the theatre is grey, isn't it?"),
    ("gb_schedule", "en-gb", "Either way, the schedule says tomato at half past four."),
    ("only_spaces", "en-us", " \t\n "),
    ("only_dots", "en-us", "..."),
    ("only_carets", "en-us", "^^^ |"),
    # Once the separator of the espeak-ng processes the Rust side ran before it called the
    # library; kept as a text that says the same words twice.
    ("separator_collision", "en-us", "Say it: vortex segment break, then stop."),
]


def dump(doc):
    """JSON with one line per entry field, so the file stays small and diffs read well."""
    compact = lambda v: json.dumps(v, ensure_ascii=False)
    entries = ",\n".join(
        " {\n" + ",\n".join(f"  {compact(k)}: {compact(v)}" for k, v in e.items()) + "\n }"
        for e in doc["entries"])
    head = "".join(f"{compact(k)}: {compact(v)}, " for k, v in doc.items() if k != "entries")
    return "{" + head + '"entries": [\n' + entries + "\n]}\n"


def check_against_phonemizer():
    """Each entry's IPA against phonemizer-fork's EspeakBackend as misaki makes it, if it is
    installed (whitespace collapsed: phonemizer pads words with spaces)."""
    try:
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError:
        print("phonemizer-fork is not installed: not checked against it")
        return
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    backends = {language: EspeakBackend(language=language, preserve_punctuation=True,
                                        with_stress=True, tie="^") for language in VOICES}
    for name, language, text in CORPUS:
        text = clean(text)
        if not text.strip():
            continue
        ours = " ".join(text_to_ipa(text, language).split())
        theirs = " ".join(backends[language].phonemize([text])[0].split())
        assert ours == theirs, f"{name}: {ours!r} != phonemizer's {theirs!r}"
    print(f"every entry's IPA is phonemizer-fork's ({len(CORPUS)} entries)")


def main():
    espeak("a", "en-us")  # loads the library
    if ESPEAK.version != ESPEAK_VERSION:
        sys.exit(f"espeak-ng is {ESPEAK.version}, the corpus is pinned to {ESPEAK_VERSION}: "
                 "pip install espeakng-loader==0.2.4")
    vocab = json.loads((HERE / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    entries = []
    for name, language, text in CORPUS:
        entry = {"name": name, "language": language, "text": text}
        entry.update(phonemize(text, language, vocab))
        entries.append(entry)
    doc = {"espeak_ng": f"libespeak-ng {ESPEAK.version} (espeakng-loader 0.2.4)",
           "limit": MAX_PHONEME_LENGTH, "entries": entries}
    out = HERE / "phonemes.json"
    out.write_text(dump(doc), encoding="utf-8")
    print(f"wrote {out} ({len(entries)} entries)")
    check_against_phonemizer()


if __name__ == "__main__":
    main()
