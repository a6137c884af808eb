//! Kokoro-82M, the audio stage's model.
//!
//! - [`layout`]: the official checkpoint's tensor layout, from its hyperparameters.

pub mod layout;

pub use layout::KokoroConfig;
