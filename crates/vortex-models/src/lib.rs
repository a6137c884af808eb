//! `vortex-models`: the adapters of the five models Vortex keeps resident, with the tensor
//! layouts of the checkpoints they target, the loading of those weights, and the cost
//! profiles the time plan is made from.
//!
//! - [`layout`]: tensor layouts; [`clip`], [`flux`], [`kokoro`] and [`liveportrait`]
//!   generate theirs from hyperparameters. CLIP, FLUX and Kokoro match their published
//!   parameter counts exactly; LivePortrait matches its published total (about 130M).
//! - [`weights`]: safetensors files checked against a layout, and synthetic weights.
//! - [`adapter`]: one [`vortex_registry::Model`] type per model ([`adapter::Flux`],
//!   [`adapter::ClipB`], [`adapter::ClipL`], [`adapter::Kokoro`], [`adapter::LivePortrait`]).
//! - [`cost`]: cost profiles (`seed-targets`, `rtx3060-public`, `zero`) and [`cost::TimePlan`].
//!
//! # Invariants
//! - Nothing here names `cust`; device memory comes only through `vortex-vram`.
//! - Reference implementations (when they land) are named as such; nothing here calls its
//!   output model inference.

pub mod adapter;
pub mod clip;
pub mod cost;
pub mod flux;
pub mod kokoro;
pub mod layout;
pub mod liveportrait;
pub mod reference;
pub mod weights;
