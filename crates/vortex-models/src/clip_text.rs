//! CLIP's text tokenizer: a prompt to the 77 token ids the text tower reads.
//!
//! The pipeline is the one `transformers` builds for `CLIPTokenizerFast` (its
//! `CLIPConverter`), put together with the `tokenizers` crate from OpenAI's BPE merges
//! (`bpe_simple_vocab_16e6.txt.gz`, read from the pinned `clip-anytorch` wheel):
//!
//! - vocabulary: the 256 byte-level characters, the same with `</w>`, the first 48 894
//!   merges joined, then `<|startoftext|>` (49406) and `<|endoftext|>` (49407), in the order
//!   OpenAI's `SimpleTokenizer` makes it;
//! - normalizer: NFC, every run of whitespace to one space, lowercase;
//! - pre-tokenizer: CLIP's regex (`'s|'t|…|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`, the rest
//!   removed), then byte-level;
//! - BPE with the end-of-word suffix `</w>`;
//! - `<|startoftext|>` before and `<|endoftext|>` after; longer than 77 tokens, the first 76
//!   are kept and `<|endoftext|>` ends them (logged with the count dropped); shorter, padded
//!   with `<|endoftext|>` (the `pad_token` of `openai/clip-vit-base-patch32`) and a zero mask.
//!
//! `tests/clip_text.rs` checks ids and masks against `transformers`' `CLIPTokenizer` on the
//! corpus `tests/data/clip/make_tokens.py` writes.

use std::io::Read;
use std::path::Path;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use vortex_runtime::fetch::{self, FetchError, Wheel};

/// Tokens the text tower reads, `<|startoftext|>` and `<|endoftext|>` included.
pub const CONTEXT: usize = 77;
/// `<|startoftext|>`.
pub const BOS: i64 = 49406;
/// `<|endoftext|>`, also the padding.
pub const EOS: i64 = 49407;
/// Merges CLIP uses: the vocabulary is 49152 ids less the 256 bytes and the 2 specials.
const MERGES: usize = 49152 - 256 - 2;

/// OpenAI's BPE merges ship in this wheel.
pub const MERGES_WHEEL: Wheel = Wheel {
    name: "clip-anytorch",
    version: "2.6.0",
    file: "clip_anytorch-2.6.0-py3-none-any.whl",
    sha256: "ebc0afed243851b9dc7e16ab8afb665237e8a5838986e97cd99f123ae4ce94ce",
    size: 1_372_891,
    target: None,
};
/// The merges' member in [`MERGES_WHEEL`] (gzip).
pub const MERGES_MEMBER: &str = "clip/bpe_simple_vocab_16e6.txt.gz";

/// The regex that splits normalized text into words, as `CLIPConverter` writes it.
const SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Why a tokenizer could not be built or a prompt not encoded.
#[derive(Debug, thiserror::Error)]
pub enum ClipTextError {
    /// Fetching or reading the pinned wheel.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The merges are not gzip or not UTF-8.
    #[error("the CLIP merges file cannot be read: {source}")]
    MergesUnreadable {
        /// What the reader said.
        #[source]
        source: std::io::Error,
    },
    /// A merges file with a line that is not two symbols, or fewer merges than CLIP uses.
    #[error(
        "the CLIP merges file is not OpenAI's bpe_simple_vocab_16e6: line {line} {problem} (a version line, then {MERGES} or more lines `a b`)"
    )]
    BadMerges {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The `tokenizers` crate refused the pipeline or the text.
    #[error("the tokenizers crate failed {what}: {source}")]
    Tokenizer {
        /// What was being done.
        what: &'static str,
        /// What it said.
        #[source]
        source: tokenizers::Error,
    },
    /// A prompt with nothing in it but whitespace.
    #[error("the prompt is empty (or only whitespace): write what the image should show")]
    EmptyPrompt,
    /// A prompt holding a control character (other than tab, line feed, carriage return).
    #[error(
        "the prompt holds the control character U+{:04X} at character {position}: remove it (tabs and line breaks are fine)",
        u32::from(*character)
    )]
    ControlCharacter {
        /// The character.
        character: char,
        /// Its index among the prompt's characters.
        position: usize,
    },
}

/// A prompt as CLIP's text tower reads it: [`CONTEXT`] ids, a mask, and what was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    ids: [i64; CONTEXT],
    attention_mask: [i64; CONTEXT],
    tokens: usize,
    dropped: usize,
}

impl Encoded {
    /// `<|startoftext|>`, the prompt's tokens, `<|endoftext|>`, then `<|endoftext|>` as padding.
    pub fn ids(&self) -> &[i64; CONTEXT] {
        &self.ids
    }

    /// 1 over the tokens (the specials included), 0 over the padding.
    pub fn attention_mask(&self) -> &[i64; CONTEXT] {
        &self.attention_mask
    }

    /// Tokens before the padding, `<|startoftext|>` and `<|endoftext|>` included (2 to 77).
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Tokens of the prompt that did not fit in [`CONTEXT`] and were dropped.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Whether the prompt was cut to fit.
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }
}

/// CLIP's BPE tokenizer (see the module's documentation).
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
}

/// GPT-2's table from bytes to printable characters, in the order CLIP's vocabulary lists
/// them (the printable bytes first, then the rest mapped from U+0100 on).
fn byte_characters() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut chars: Vec<char> = (0u32..256)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32)
        .collect();
    chars.extend(
        (0u32..256)
            .filter(|&b| !printable(b))
            .zip(0x100u32..)
            .filter_map(|(_, c)| char::from_u32(c)),
    );
    chars
}

fn tokenizer_error(what: &'static str) -> impl FnOnce(tokenizers::Error) -> ClipTextError {
    move |source| ClipTextError::Tokenizer { what, source }
}

impl ClipTokenizer {
    /// Builds the tokenizer from OpenAI's merges file, gzipped (as it ships) or not.
    pub fn from_merges(bytes: &[u8]) -> Result<Self, ClipTextError> {
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_string(&mut text)
                .map_err(|source| ClipTextError::MergesUnreadable { source })?;
            text
        } else {
            String::from_utf8(bytes.to_vec()).map_err(|e| ClipTextError::MergesUnreadable {
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?
        };
        // Line 1 is the version; CLIP uses the next MERGES lines.
        let mut merges = Vec::with_capacity(MERGES);
        for (index, line) in text.lines().enumerate().skip(1).take(MERGES) {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_owned(), b.to_owned())),
                _ => {
                    return Err(ClipTextError::BadMerges {
                        line: index + 1,
                        problem: "is not two symbols",
                    });
                }
            }
        }
        if merges.len() < MERGES {
            return Err(ClipTextError::BadMerges {
                line: merges.len() + 2,
                problem: "is missing",
            });
        }

        let bytes = byte_characters();
        let mut words: Vec<String> = bytes.iter().map(char::to_string).collect();
        words.extend(bytes.iter().map(|c| format!("{c}</w>")));
        words.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        words.push("<|startoftext|>".to_owned());
        words.push("<|endoftext|>".to_owned());
        let vocab: Vocab = words.into_iter().zip(0u32..).collect();

        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".to_owned())
            .unk_token("<|endoftext|>".to_owned())
            .fuse_unk(false)
            .build()
            .map_err(tokenizer_error("to build the BPE model"))?;
        let mut inner = Tokenizer::new(model);
        let whitespace = Replace::new(ReplacePattern::Regex(r"\s+".to_owned()), " ")
            .map_err(tokenizer_error("to compile the whitespace regex"))?;
        inner.with_normalizer(Some(NormalizerSequence::new(vec![
            NFC.into(),
            whitespace.into(),
            Lowercase.into(),
        ])));
        let split = Split::new(
            SplitPattern::Regex(SPLIT.to_owned()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(tokenizer_error("to compile CLIP's split regex"))?;
        inner.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, true).into(),
        ])));
        inner.with_post_processor(Some(
            RobertaProcessing::new(
                ("<|endoftext|>".to_owned(), 49407),
                ("<|startoftext|>".to_owned(), 49406),
            )
            .add_prefix_space(false)
            .trim_offsets(false),
        ));
        inner.add_special_tokens(&[
            AddedToken::from("<|startoftext|>", true),
            AddedToken::from("<|endoftext|>", true),
        ]);
        Ok(Self { inner })
    }

    /// The prompt's ids, padded or cut to [`CONTEXT`]. A prompt that is empty or only
    /// whitespace, or that holds a control character other than tab, line feed and carriage
    /// return, is refused; a prompt too long is cut (and a warning says how much).
    pub fn encode(&self, prompt: &str) -> Result<Encoded, ClipTextError> {
        if let Some((position, character)) = prompt
            .chars()
            .enumerate()
            .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(ClipTextError::ControlCharacter {
                character,
                position,
            });
        }
        if prompt.trim().is_empty() {
            return Err(ClipTextError::EmptyPrompt);
        }
        let encoding = self
            .inner
            .encode(prompt, true)
            .map_err(tokenizer_error("to encode the prompt"))?;
        let all = encoding.get_ids();
        if all.len() <= 2 {
            return Err(ClipTextError::EmptyPrompt);
        }
        let (kept, dropped) = if all.len() > CONTEXT {
            (&all[..CONTEXT - 1], all.len() - CONTEXT)
        } else {
            (&all[..all.len() - 1], 0)
        };
        if dropped > 0 {
            tracing::warn!(
                target: "vortex_models::clip",
                tokens = all.len(),
                dropped,
                "the prompt is {} tokens, CLIP reads {CONTEXT}: the last {dropped} are dropped",
                all.len()
            );
        }
        let mut ids = [EOS; CONTEXT];
        let mut attention_mask = [0; CONTEXT];
        for (slot, &id) in ids.iter_mut().zip(kept) {
            *slot = i64::from(id);
        }
        let tokens = kept.len() + 1;
        attention_mask[..tokens].fill(1);
        Ok(Encoded {
            ids,
            attention_mask,
            tokens,
            dropped,
        })
    }
}

/// CLIP's tokenizer from the merges in the pinned `clip-anytorch` wheel, fetched into
/// `cache` (`runtime::fetch::cache_dir()`) once.
pub fn clip_tokenizer(cache: &Path) -> Result<ClipTokenizer, ClipTextError> {
    let hint = format!(
        "{}/wheels/{} (pip download --no-deps {})",
        cache.display(),
        MERGES_WHEEL.file,
        MERGES_WHEEL.requirement()
    );
    let wheel = fetch::fetch_wheel(&MERGES_WHEEL, cache, &hint)?;
    let merges = fetch::read_member(&wheel, MERGES_MEMBER)?;
    ClipTokenizer::from_merges(&merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_table_is_gpt2s() {
        let chars = byte_characters();
        assert_eq!(chars.len(), 256);
        assert_eq!(chars[0], '!');
        assert_eq!(chars[93], '~');
        assert_eq!(chars[188], '\u{100}');
        assert_eq!(chars[255], '\u{143}');
    }
}
