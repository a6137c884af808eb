//! `vortex-registry`: the `Model` trait, the typed `ModelRegistry`, the VRAM plan and the
//! transactional load, over `vortex-vram`.
//!
//! Not built yet: this crate is empty until the registry issue lands. It exists so that the
//! workspace has its final shape and its dependency direction (registry → vram) is fixed.
//!
//! # Invariants
//! - There is no API to unload a model.
//! - Nothing here names `cust`; device memory comes only through `vortex-vram`.
