//! `kokoro::phonemes` against the Python reference: `tests/data/kokoro/phonemes.json`, written
//! by `tests/data/kokoro/make_phonemes.py` (misaki 0.9.4's espeak-ng fallback and
//! kokoro-onnx 0.6.1's chunker) with espeak-ng 1.51. The corpus tests run the real espeak-ng
//! and fail, rather than skip, when it is not installed.

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use vortex_models::kokoro::phonemes::{
    self, Language, MAX_TOKENS, PhonemeError, Vocab, espeak_ipa, espeak_ipa_with, normalize,
    phonemize, split,
};

const VOCAB: &str = include_str!("data/kokoro/vocab.json");
const CORPUS: &str = include_str!("data/kokoro/phonemes.json");

#[derive(serde::Deserialize)]
struct Corpus {
    espeak_ng: String,
    limit: usize,
    entries: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    language: String,
    text: String,
    ipa: Option<String>,
    phonemes: Option<String>,
    tokens: Option<Vec<i64>>,
    chunks: Option<Vec<String>>,
    error: Option<String>,
}

fn vocab() -> Vocab {
    Vocab::from_json(VOCAB).expect("tests/data/kokoro/vocab.json parses")
}

fn corpus() -> Corpus {
    serde_json::from_str(CORPUS).expect("tests/data/kokoro/phonemes.json parses")
}

/// The installed espeak-ng's version line; panics when there is none, so that a machine
/// without it fails these tests instead of passing them silently.
fn require_espeak() -> String {
    match Command::new(phonemes::ESPEAK).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => panic!("`espeak-ng --version` failed with {}", out.status),
        Err(e) => {
            panic!("espeak-ng is not on PATH ({e}); these tests need it: apt-get install espeak-ng")
        }
    }
}

/// Everything the pipeline says about one corpus entry, against what Python said; returns
/// the differences.
fn check(entry: &Entry, vocab: &Vocab, limit: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let mut differ = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        let (got, want) = (format!("{got:?}"), format!("{want:?}"));
        if got != want {
            problems.push(format!(
                "{}: {what}\n    rust:   {got}\n    python: {want}",
                entry.name
            ));
        }
    };
    let language = Language::parse(&entry.language).expect("corpus languages parse");
    if let Some(ipa) = &entry.ipa {
        let got = espeak_ipa(&entry.text, language).map_err(|e| e.to_string());
        differ("espeak_ipa", &got, &Ok::<_, String>(ipa.clone()));
    }
    match (phonemize(&entry.text, language, vocab), &entry.error) {
        (Ok(got), None) => {
            differ("phonemize", &got, &entry.phonemes.as_deref().unwrap_or(""));
            differ(
                "tokens",
                &vocab.tokens(&got),
                &entry.tokens.as_deref().unwrap_or(&[]),
            );
            differ(
                "split",
                &split(&got, limit),
                &entry.chunks.as_deref().unwrap_or(&[]),
            );
        }
        (Err(PhonemeError::Empty), Some(e)) if e == "empty" => {}
        (Err(PhonemeError::NothingToSay { .. }), Some(e)) if e == "nothing_to_say" => {}
        (got, want) => differ("phonemize outcome", &got, want),
    }
    problems
}

#[test]
fn corpus_matches_python() {
    let version = require_espeak();
    let corpus = corpus();
    let vocab = vocab();
    assert_eq!(corpus.limit, MAX_TOKENS);
    let problems: Vec<String> = corpus
        .entries
        .iter()
        .flat_map(|entry| check(entry, &vocab, corpus.limit))
        .collect();
    assert!(
        problems.is_empty(),
        "{} differences from tests/data/kokoro/phonemes.json (written with {}; this machine has {}):\n{}",
        problems.len(),
        corpus.espeak_ng,
        version.trim(),
        problems.join("\n")
    );
}

#[test]
fn the_corpus_covers_what_it_should() {
    let corpus = corpus();
    let text = |name: &str| {
        let entry = corpus.entries.iter().find(|e| e.name == name);
        entry.map(|e| e.text.clone()).unwrap_or_default()
    };
    assert!(text("leading_dash").starts_with('-'));
    assert!(text("paragraph").chars().count() >= 1400);
    assert!(
        text("run_on").len() >= 1000,
        "one segment too long to batch"
    );
    assert!(text("separator_collision").contains(phonemes::SEPARATOR));
    let multi_chunk = corpus
        .entries
        .iter()
        .filter(|e| e.chunks.as_ref().is_some_and(|c| c.len() > 1));
    assert!(multi_chunk.count() >= 2);
}

#[test]
fn empty_text_is_an_error_before_espeak_runs() {
    let vocab = vocab();
    for text in ["", "   ", "\n\t ", "\u{7}\u{0}"] {
        let missing = Path::new("/nonexistent/espeak-ng");
        let err = phonemes::phonemize_with(missing, text, Language::EnUs, &vocab).unwrap_err();
        assert!(matches!(err, PhonemeError::Empty), "{text:?}: {err}");
    }
    assert_eq!(
        espeak_ipa_with(Path::new("/nonexistent"), " ", Language::EnUs).unwrap(),
        ""
    );
}

#[test]
fn nothing_to_say_names_the_text() {
    require_espeak();
    let err = phonemize("?!…", Language::EnUs, &vocab()).unwrap_err();
    assert!(matches!(&err, PhonemeError::NothingToSay { text_excerpt } if text_excerpt == "?!…"));
    assert!(err.to_string().contains("give at least one word"), "{err}");
}

#[test]
fn a_missing_espeak_says_how_to_install_it() {
    let missing = Path::new("/nonexistent/espeak-ng");
    let err = espeak_ipa_with(missing, "Hello world.", Language::EnUs).unwrap_err();
    assert!(matches!(&err, PhonemeError::EspeakMissing { program } if program == missing));
    assert!(
        err.to_string().contains("apt-get install espeak-ng"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_failing_espeak_reports_its_status() {
    let err = espeak_ipa_with(Path::new("false"), "Hello world.", Language::EnUs).unwrap_err();
    match &err {
        PhonemeError::EspeakFailed { status, voice, .. } => {
            assert_eq!(status.code(), Some(1));
            assert_eq!(*voice, "en-us");
        }
        other => panic!("expected EspeakFailed, got {other:?}"),
    }
}

#[test]
fn languages() {
    assert_eq!(Language::parse("en-us").unwrap(), Language::EnUs);
    assert_eq!(Language::parse("en").unwrap(), Language::EnUs);
    assert_eq!(Language::parse("EN-GB").unwrap(), Language::EnGb);
    assert_eq!(Language::EnGb.espeak_voice(), "en-gb");
    let err = Language::parse("fr").unwrap_err();
    assert!(
        matches!(&err, PhonemeError::UnknownLanguage { given, supported } if given == "fr" && supported.contains(&"en-gb"))
    );
    assert_eq!(
        err.to_string(),
        "unknown language \"fr\"; use one of en-us, en, en-gb"
    );
}

#[test]
fn vocab_maps_symbols_and_rejects_bad_files() {
    let vocab = vocab();
    assert_eq!(vocab.len(), 114);
    assert_eq!(vocab.id(' '), Some(16));
    assert_eq!(vocab.id('ˈ'), Some(156));
    assert_eq!(vocab.id('\u{329}'), None);
    // "hello" in the README: unknown symbols are dropped, not mapped to anything.
    assert_eq!(vocab.tokens("hə«lˈO"), [50, 83, 54, 156, 31]);
    let bad = [
        ("", "not of the form"),
        ("{\"vocab\": []}", "not of the form"),
        ("{\"vocab\": {\"ab\": 1}}", "\"ab\" is not one character"),
        ("{\"vocab\": {\"\": 1}}", "\"\" is not one character"),
        ("{\"vocab\": {\"a\": 1.5}}", "not of the form"),
    ];
    for (json, message) in bad {
        let err = Vocab::from_json(json).unwrap_err();
        assert!(err.to_string().contains(message), "{json}: {err}");
    }
}

#[test]
fn normalize_applies_misakis_tables_in_order() {
    let cases = [
        ("a^ɪ a^ʊ d^ʒ e^ɪ t^ʃ ɔ^ɪ", Language::EnUs, "I W ʤ A ʧ Y"),
        ("ə^l ʲo ʲə ʲu", Language::EnUs, "ᵊl jɔ jə u"),
        ("ɚ r x ç ɐ ɬ a\u{303}", Language::EnUs, "əɹ ɹ k k ə l a"),
        // Glottal stop + syllabic n: E2M, then ʔ → t.
        ("bˈʌʔn\u{329} kˈɑʔˌn\u{329}", Language::EnUs, "bˈʌtn kˈɑtn"),
        // The syllabic rule: a schwa before the character; a mark after a space just goes.
        // Whitespace is stripped before the tables (as in misaki), so what they leave stays.
        ("bˈɑɾl\u{329} a \u{329}", Language::EnUs, "bˈɑTᵊl a "),
        ("l\u{329}\u{329}", Language::EnUs, "ᵊl"),
        ("o^ʊ ɜːɹ ɜː ɪə iː", Language::EnUs, "O ɜɹ ɜɹ iə i"),
        ("o^ʊ ɜːɹ ə^ʊ ɪə iə", Language::EnGb, "ɔʊ ɜːɹ Q ɪə ɪə"),
        // misaki's own quirk: E2M has made e an A before the British e^ə is looked for.
        ("e^ə", Language::EnGb, "Aə"),
        ("  ɾ ʔ o ^ \t", Language::EnUs, "T t ɔ "),
    ];
    for (ipa, language, want) in cases {
        assert_eq!(normalize(ipa, language), want, "{ipa:?} ({language})");
    }
}

#[test]
fn split_cuts_at_the_least_disruptive_boundary() {
    let words = |n: usize, w: &str| vec![w; n].join(" ");
    // Two sentences of 300: cut after the period, the mark stays left.
    let a = format!("{}.", words(75, "abc"));
    let b = format!("{}.", words(75, "xyz"));
    assert_eq!(split(&format!("{a} {b}"), 510), [a.clone(), b.clone()]);
    // No sentence mark: after the comma.
    let c = format!("{},", words(75, "abc"));
    assert_eq!(split(&format!("{c}  {b}"), 510), [c, b]);
    // A run with no whitespace is sliced.
    let run = "ə".repeat(1200);
    let chunks = split(&run, MAX_TOKENS);
    let lengths: Vec<usize> = chunks.iter().map(|c| c.chars().count()).collect();
    assert_eq!(lengths, [510, 510, 180]);
    // Balanced: 11 atoms of 99 fit 5 to a batch of 499, but 4, 4, 3 is as few and fuller.
    let balanced = split(&words(11, &"a".repeat(99)), 510);
    let lengths: Vec<usize> = balanced.iter().map(|c| c.chars().count()).collect();
    assert_eq!(lengths, [399, 399, 299]);
    assert!(split(" \t ", 510).is_empty());
    assert_eq!(split("short one", 510), ["short one"]);
    assert_eq!(split("ab", 0), ["a", "b"]);
}

fn non_space(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

proptest! {
    #[test]
    fn split_keeps_every_symbol_within_the_limit(
        text in "[abə ˈ.,!?…;:\t\u{3000}]{0,300}",
        limit in 1usize..80,
    ) {
        let chunks = split(&text, limit);
        for chunk in &chunks {
            prop_assert!(chunk.chars().count() <= limit, "{chunk:?} > {limit}");
            prop_assert!(!chunk.is_empty());
            prop_assert_eq!(chunk.trim(), chunk.as_str());
        }
        prop_assert_eq!(non_space(&chunks.concat()), non_space(&text));
    }

    #[test]
    fn normalize_and_split_take_any_text(text in any::<String>(), limit in 0usize..600) {
        let normalized = normalize(&text, Language::EnUs);
        let _ = normalize(&text, Language::EnGb);
        for chunk in split(&normalized, limit) {
            prop_assert!(chunk.chars().count() <= limit.max(1));
        }
    }
}

/// Arbitrary text through the real espeak-ng: an answer or a clear error, never a panic.
#[test]
fn phonemize_takes_any_text() {
    require_espeak();
    let vocab = vocab();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    let outcome = runner.run(&any::<String>(), |text| {
        match phonemize(&text, Language::EnUs, &vocab) {
            Ok(phonemes) => prop_assert!(!phonemes.trim().is_empty()),
            Err(PhonemeError::Empty | PhonemeError::NothingToSay { .. }) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
        Ok(())
    });
    outcome.unwrap();
}
