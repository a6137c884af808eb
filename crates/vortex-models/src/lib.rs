//! `vortex-models`: the adapters of the five models Vortex keeps resident, with the tensor
//! layouts of the checkpoints they target and the loading of those weights.

pub mod clip;
pub mod flux;
pub mod layout;
pub mod weights;
