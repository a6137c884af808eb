//! [`VramError`], the one error type of `vortex-vram`.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::BackendError;
use crate::tracker::Purpose;
use crate::units::Bytes;

/// Everything that can go wrong in `vortex-vram`.
#[derive(Debug, thiserror::Error)]
pub enum VramError {
    /// The request would take tracked usage above the hard limit; nothing was allocated.
    #[error(
        "hard limit: {} for `{owner}` ({purpose}) would take VRAM usage from {} to {}, above the hard limit of {} ({limit} bytes); lower the request, free memory first, or raise the hard limit",
        Bytes(*requested), Bytes(*current), Bytes(current.saturating_add(*requested)), Bytes(*limit)
    )]
    HardLimit {
        /// The owner that asked.
        owner: Arc<str>,
        /// What for.
        purpose: Purpose,
        /// Tracked bytes before the request.
        current: u64,
        /// Bytes asked for.
        requested: u64,
        /// The hard limit.
        limit: u64,
    },
    /// A region of the arena could not fit the request; the report has the breakdown.
    #[error(transparent)]
    OutOfMemory(Box<OomReport>),
    /// The device does not have the free memory a plan needs; nothing was allocated.
    #[error(
        "pre-flight: {what} needs {} ({required} bytes) but the device has {} free of {}; {remediation}",
        Bytes(*required), Bytes(*available), Bytes(*total)
    )]
    Preflight {
        /// What was being checked.
        what: String,
        /// Bytes needed.
        required: u64,
        /// Bytes the device reported free.
        available: u64,
        /// The device's total memory.
        total: u64,
        /// What to change.
        remediation: String,
    },
    /// The backend could not supply memory for a tracked owner.
    #[error("device allocation of {} for `{owner}` failed: {source}", Bytes(*requested))]
    Backend {
        /// The owner that asked (`arena` for the slab itself).
        owner: Arc<str>,
        /// What for, when an owner's purpose was known.
        purpose: Option<Purpose>,
        /// Bytes asked for.
        requested: u64,
        /// What the backend said.
        #[source]
        source: BackendError,
    },
    /// Any other backend failure (device lost, driver error).
    #[error(transparent)]
    Device(#[from] BackendError),
    /// Limits that cannot work together.
    #[error(
        "invalid limits: the soft limit ({soft} bytes) must be below the hard limit ({hard} bytes), and the hard limit at most 1 PiB"
    )]
    InvalidLimits {
        /// The soft limit given.
        soft: u64,
        /// The hard limit given.
        hard: u64,
    },
    /// A request the caller could have checked: zero bytes, an unknown owner, and the like.
    #[error("invalid request: {what}")]
    InvalidRequest {
        /// What was wrong and what to do instead.
        what: String,
    },
    /// The tracker's owner table is full.
    #[error(
        "cannot register owner `{name}`: the tracker has room for {max} owners; build it with a larger max_owners"
    )]
    TooManyOwners {
        /// The owner that did not fit.
        name: String,
        /// The table's size.
        max: usize,
    },
}

/// The arena region an out-of-memory error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// The bump-allocated region for weights and output buffers.
    Static,
    /// The scratch region.
    Scratch,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Region::Static => "static",
            Region::Scratch => "scratch",
        })
    }
}

/// The breakdown of an out-of-memory error, in the spirit of PyTorch's: what was asked, what
/// the region had, allocated against reserved, fragmentation and who holds the most.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OomReport {
    /// The owner that asked.
    pub owner: Arc<str>,
    /// What for.
    pub purpose: Purpose,
    /// The arena region that could not fit it.
    pub region: Region,
    /// Bytes asked for.
    pub requested: u64,
    /// The region's capacity.
    pub capacity: u64,
    /// The region's free bytes.
    pub free: u64,
    /// The region's largest free block.
    pub largest_free_block: u64,
    /// `1 - largest_free_block / free` for the region (0 when nothing is free).
    pub fragmentation: f64,
    /// Tracked bytes, all owners.
    pub allocated: u64,
    /// Bytes held from the backend.
    pub reserved: u64,
    /// The largest owners and their bytes, largest first (at most five).
    pub top_owners: Vec<(Arc<str>, u64)>,
}

impl fmt::Display for OomReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "out of memory: tried to allocate {} ({} bytes) for `{}` ({}) in the {} region; \
             the region has {} capacity, {} free, largest free block {} (fragmentation {:.1}%); \
             {} allocated of {} reserved",
            Bytes(self.requested),
            self.requested,
            self.owner,
            self.purpose,
            self.region,
            Bytes(self.capacity),
            Bytes(self.free),
            Bytes(self.largest_free_block),
            self.fragmentation * 100.0,
            Bytes(self.allocated),
            Bytes(self.reserved),
        )?;
        if !self.top_owners.is_empty() {
            f.write_str("; top owners:")?;
            for (i, (owner, bytes)) in self.top_owners.iter().enumerate() {
                let sep = if i == 0 { " " } else { ", " };
                write!(f, "{sep}{owner} {}", Bytes(*bytes))?;
            }
        }
        let remedy = match self.region {
            Region::Static => {
                "raise the static region size in the plan or lower the model and buffer budgets"
            }
            Region::Scratch if self.requested <= self.free => {
                "the free space is fragmented: release long-lived scratch buffers or raise the scratch region size"
            }
            Region::Scratch => {
                "raise the scratch region size or release scratch buffers held across slots"
            }
        };
        write!(f, "; {remedy}")
    }
}

impl std::error::Error for OomReport {}
