//! `kokoro::phonemes` against the Python reference: `tests/data/kokoro/phonemes.json`, written
//! by `tests/data/kokoro/make_phonemes.py` (misaki 0.9.4's espeak-ng fallback through
//! phonemizer-fork 3.3.2 and kokoro-onnx 0.6.1's chunker) with espeak-ng 1.52.0 from the
//! pinned `espeakng-loader` wheel. The corpus tests load that very library from Vortex's
//! cache (fetching the wheel on first use, as a fresh machine does); nothing is skipped.

use std::path::PathBuf;

use proptest::prelude::*;
use vortex_models::kokoro::assets;
use vortex_models::kokoro::phonemes::{
    Espeak, Language, MAX_TOKENS, PhonemeError, Vocab, normalize, phonemize, split,
};
use vortex_runtime::fetch;

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

/// espeak-ng from the pinned wheel, as the audio stage loads it.
fn espeak() -> &'static Espeak {
    let files = assets::espeak(&fetch::cache_dir()).expect("espeak-ng from the pinned wheel");
    Espeak::load(&files.library, &files.data).expect("espeak-ng loads")
}

/// Everything the pipeline says about one corpus entry, against what Python said; returns
/// the differences.
fn check(espeak: &Espeak, entry: &Entry, vocab: &Vocab, limit: usize) -> Vec<String> {
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
        let got = espeak.ipa(&entry.text, language).map_err(|e| e.to_string());
        differ("espeak ipa", &got, &Ok::<_, String>(ipa.clone()));
    }
    match (
        phonemize(espeak, &entry.text, language, vocab),
        &entry.error,
    ) {
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
    let espeak = espeak();
    let corpus = corpus();
    let vocab = vocab();
    assert_eq!(corpus.limit, MAX_TOKENS);
    let problems: Vec<String> = corpus
        .entries
        .iter()
        .flat_map(|entry| check(espeak, entry, &vocab, corpus.limit))
        .collect();
    assert!(
        problems.is_empty(),
        "{} differences from tests/data/kokoro/phonemes.json (written with {}; this is {} from {}):\n{}",
        problems.len(),
        corpus.espeak_ng,
        espeak.version(),
        espeak.library().display(),
        problems.join("\n")
    );
}

#[test]
fn the_pinned_library_is_the_one_the_corpus_was_written_with() {
    let espeak = espeak();
    assert_eq!(espeak.version(), "1.52.0");
    assert!(corpus().espeak_ng.contains("1.52.0"));
}

/// The library is not re-entrant: threads phonemizing at once get what one thread gets.
#[test]
fn threads_at_once_get_what_one_thread_gets() {
    let espeak = espeak();
    let corpus = corpus();
    let texts: Vec<(&str, Language)> = corpus
        .entries
        .iter()
        .filter(|e| e.ipa.is_some())
        .map(|e| (e.text.as_str(), Language::parse(&e.language).unwrap()))
        .collect();
    let alone: Vec<String> = texts
        .iter()
        .map(|(text, language)| espeak.ipa(text, *language).unwrap())
        .collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|k| {
                let texts = &texts;
                scope.spawn(move || {
                    // Each thread in another order, so the voices switch under one another.
                    (0..texts.len())
                        .map(|i| {
                            let i = (i * 7 + k) % texts.len();
                            (i, espeak.ipa(texts[i].0, texts[i].1).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for (i, ipa) in worker.join().unwrap() {
                assert_eq!(ipa, alone[i], "{:?}", texts[i].0);
            }
        }
    });
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
    assert!(text("run_on").len() >= 1000, "one long segment");
    assert!(text("newlines").contains('\n'));
    let multi_chunk = corpus
        .entries
        .iter()
        .filter(|e| e.chunks.as_ref().is_some_and(|c| c.len() > 1));
    assert!(multi_chunk.count() >= 2);
}

#[test]
fn empty_text_is_an_error() {
    let (espeak, vocab) = (espeak(), vocab());
    for text in ["", "   ", "\n\t ", "\u{7}\u{0}"] {
        let err = phonemize(espeak, text, Language::EnUs, &vocab).unwrap_err();
        assert!(matches!(err, PhonemeError::Empty), "{text:?}: {err}");
    }
    assert_eq!(espeak.ipa(" ", Language::EnUs).unwrap(), "");
}

#[test]
fn nothing_to_say_names_the_text() {
    let err = phonemize(espeak(), "?!…", Language::EnUs, &vocab()).unwrap_err();
    assert!(matches!(&err, PhonemeError::NothingToSay { text_excerpt } if text_excerpt == "?!…"));
    assert!(err.to_string().contains("give at least one word"), "{err}");
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vortex-espeak-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A library that will not load (not a library, another architecture, not espeak-ng): an
/// error naming the file and what to do, never a crash.
#[test]
fn a_library_that_will_not_load_is_named_with_what_to_do() {
    let files = assets::espeak(&fetch::cache_dir()).unwrap();
    let dir = temp("badlib");
    let not_elf = dir.join("libespeak-ng.so");
    std::fs::write(&not_elf, b"a cut download, not a library").unwrap();
    // The real library marked as built for another machine (ELF e_machine = AArch64).
    let mut elf = std::fs::read(&files.library).unwrap();
    elf[18..20].copy_from_slice(&183u16.to_le_bytes());
    let other_arch = dir.join("libespeak-ng-aarch64.so");
    std::fs::write(&other_arch, elf).unwrap();
    let mut candidates = vec![not_elf, other_arch];
    // A library of this machine that is not espeak-ng.
    candidates.extend(
        [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file()),
    );
    for library in candidates {
        let err = Espeak::load(&library, &files.data).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, PhonemeError::EspeakLoad { library: l, .. } if l.file_name() == library.file_name()),
            "{message}"
        );
        assert!(
            message.contains("espeakng-loader==0.2.4") && message.contains("delete"),
            "{message}"
        );
    }
    let missing = Espeak::load(&dir.join("absent.so"), &files.data).unwrap_err();
    assert!(
        matches!(missing, PhonemeError::EspeakLoad { .. }),
        "{missing}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data folder espeak-ng cannot start from is refused before the library is called.
#[test]
fn a_broken_data_folder_is_refused_with_what_to_do() {
    let files = assets::espeak(&fetch::cache_dir()).unwrap();
    let dir = temp("baddata");
    // A copy of the library: a file of its own, so a load of its own.
    let library = dir.join("libespeak-ng.so");
    std::fs::copy(&files.library, &library).unwrap();
    let empty = dir.join("espeak-ng-data");
    std::fs::create_dir_all(&empty).unwrap();
    let err = Espeak::load(&library, &empty).unwrap_err();
    assert!(
        matches!(&err, PhonemeError::EspeakData { data, problem } if data == &empty && problem.contains("phontab")),
        "{err}"
    );
    assert!(err.to_string().contains("delete it"), "{err}");
    let long = dir.join("x".repeat(160)).join("espeak-ng-data");
    let err = Espeak::load(&library, &long).unwrap_err();
    assert!(err.to_string().contains("VORTEX_CACHE"), "{err}");
    // The same copy with the real data then works.
    let espeak = Espeak::load(&library, &files.data).unwrap();
    assert_eq!(
        espeak.ipa("Hello world.", Language::EnUs).unwrap(),
        "həlˈo^ʊ wˈɜːld."
    );
    let _ = std::fs::remove_dir_all(&dir);
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

/// Arbitrary text through the pinned espeak-ng: an answer or a clear error, never a panic.
#[test]
fn phonemize_takes_any_text() {
    let (espeak, vocab) = (espeak(), vocab());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    let outcome = runner.run(&any::<String>(), |text| {
        match phonemize(espeak, &text, Language::EnUs, &vocab) {
            Ok(phonemes) => prop_assert!(!phonemes.trim().is_empty()),
            Err(PhonemeError::Empty | PhonemeError::NothingToSay { .. }) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
        Ok(())
    });
    outcome.unwrap();
}
