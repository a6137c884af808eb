#!/usr/bin/env python3
"""Writes phonemes.json, the corpus `tests/phonemes.rs` checks `kokoro::phonemes` against.

Pinned: Python 3.11.7, standard library only, and Debian bookworm's `espeak-ng`
1.51+dfsg-10+deb12u2 (`espeak-ng --version`: "eSpeak NG text-to-speech: 1.51  Data at:
/usr/lib/x86_64-linux-gnu/espeak-ng-data"); `apt-get install espeak-ng`. Nothing random.

Run from anywhere: python3 make_phonemes.py [--any-espeak]

The pipeline is the reference phonemizer golden.py also uses (misaki 0.9.4 EspeakFallback driven the way
misaki drives espeak-ng through phonemizer-fork 3.3.2, plus kokoro-onnx 0.6.1's chunker),
written out again here so the repository holds it, with three changes:
- espeak-ng reads each segment on stdin with `--stdin` (the whole stream as one text)
  instead of as an argument, so a segment starting with '-' is not taken for an option.
  The espeak-ng source hands both forms to the same espeak_Synth call; this script checks
  that the argument form gives the same output for every segment it can be used on.
- ASCII control characters other than '\\n' and '\\t' become spaces first.
- misaki's british=True table is kept beside the American one (language "en-gb").
"""
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ESPEAK_VERSION = "eSpeak NG text-to-speech: 1.51 "
VOICES = {"en-us": "en-us", "en-gb": "en-gb"}

# --- 1. espeak-ng, segment by segment (phonemizer's punctuation handling) ----------------
PUNCT_MARKS = ';:,.!?¡¿—…"«»“”(){}[]'
PUNCT_RE = re.compile(r"(\s*[" + re.escape(PUNCT_MARKS) + r"]+\s*)+")


def espeak_cmd(language):
    return ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", VOICES[language]]


def espeak(segment, language):
    """One espeak-ng call; its output lines (one per clause) are joined by single spaces."""
    out = subprocess.run(espeak_cmd(language) + ["--stdin"], input=segment,
                         capture_output=True, text=True, check=True).stdout
    if not segment.startswith("-"):
        argv = subprocess.run(espeak_cmd(language) + [segment], capture_output=True,
                              text=True, check=True).stdout
        assert argv == out, f"stdin and argument forms differ on {segment!r}"
    return " ".join(out.split())


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
    # Its middle segment is the Rust side's batch separator (`SEPARATOR` in phonemes.rs), so
    # there it takes the one-process-per-segment path.
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


def main():
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                             check=True).stdout
    if not version.startswith(ESPEAK_VERSION) and "--any-espeak" not in sys.argv:
        sys.exit(f"espeak-ng is {version.strip()!r}, the corpus is pinned to 1.51; "
                 "install Debian bookworm's espeak-ng or pass --any-espeak")
    vocab = json.loads((HERE / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    entries = []
    for name, language, text in CORPUS:
        entry = {"name": name, "language": language, "text": text}
        entry.update(phonemize(text, language, vocab))
        entries.append(entry)
    doc = {"espeak_ng": version.split("Data at")[0].strip(), "limit": MAX_PHONEME_LENGTH,
           "entries": entries}
    out = HERE / "phonemes.json"
    out.write_text(dump(doc), encoding="utf-8")
    print(f"wrote {out} ({len(entries)} entries)")


if __name__ == "__main__":
    main()
