//! Kokoro-82M, the audio stage's model.
//!
//! - [`layout`]: the official checkpoint's tensor layout, from its hyperparameters.
//! - [`phonemes`]: text to token ids (espeak-ng, misaki's normalization, the vocabulary) and
//!   the split of long phoneme strings into batches of at most [`phonemes::MAX_TOKENS`].

pub mod layout;
pub mod phonemes;

pub use layout::KokoroConfig;
