//! `vortex-models`: the five model adapters (Flux, LivePortrait, Kokoro, CLIP ViT-B/32,
//! CLIP ViT-L/14): footprints, weight loading and their reference implementations.
//!
//! Not built yet: this crate is empty until the models issue lands. The reference
//! implementations, when they come, are named as such everywhere; nothing here will call them
//! model inference.
