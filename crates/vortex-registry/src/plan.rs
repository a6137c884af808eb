//! The VRAM plan: every owner's bytes, added up and compared with the hard limit and the
//! device's capacity before anything is allocated (DESIGN.md §3).

use std::fmt;

use serde::Serialize;
use vortex_vram::{ArenaConfig, Bytes, Limits, Purpose};

use crate::error::InitError;
use crate::registry::CpuWeights;

/// Element type of an output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// 8-bit unsigned.
    U8,
    /// IEEE half.
    F16,
    /// IEEE single.
    F32,
}

impl Dtype {
    /// Its name in config.toml (`"u8"`, `"f16"`, `"f32"`).
    pub const fn config_name(self) -> &'static str {
        match self {
            Dtype::U8 => "u8",
            Dtype::F16 => "f16",
            Dtype::F32 => "f32",
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> u64 {
        match self {
            Dtype::U8 => 1,
            Dtype::F16 => 2,
            Dtype::F32 => 4,
        }
    }
}

/// Where an output buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// In device memory.
    Device,
    /// In pinned host memory, with a small ring of staging frames on the device.
    PinnedHost {
        /// Frames in the device-side staging ring.
        staging_frames: u64,
    },
}

/// The shapes of the three output buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutputBuffers {
    /// Actor image side in pixels (square).
    pub image_size: u64,
    /// Colour channels.
    pub channels: u64,
    /// Actor image element type.
    pub actor_dtype: Dtype,
    /// Slot length in seconds.
    pub seconds: u64,
    /// Audio sample rate in Hz.
    pub sample_rate: u64,
    /// Audio element type.
    pub audio_dtype: Dtype,
    /// Video frames per second.
    pub fps: u64,
    /// Video element type.
    pub video_dtype: Dtype,
    /// Where the video buffer lives.
    pub video_placement: Placement,
}

impl OutputBuffers {
    /// The seed shapes: 512×512×3 u8 actor, 45 s of 24 kHz f32 audio, 45 s of 24 fps
    /// 512×512×3 u8 video on the device.
    pub const fn seed() -> Self {
        OutputBuffers {
            image_size: 512,
            channels: 3,
            actor_dtype: Dtype::U8,
            seconds: 45,
            sample_rate: 24_000,
            audio_dtype: Dtype::F32,
            fps: 24,
            video_dtype: Dtype::U8,
            video_placement: Placement::Device,
        }
    }

    /// Bytes of the actor image.
    pub const fn actor_bytes(&self) -> u64 {
        self.image_size * self.image_size * self.channels * self.actor_dtype.size()
    }

    /// Bytes of the audio waveform.
    pub const fn audio_bytes(&self) -> u64 {
        self.seconds * self.sample_rate * self.audio_dtype.size()
    }

    /// Frames in a slot.
    pub const fn frames(&self) -> u64 {
        self.seconds * self.fps
    }

    /// Bytes of one video frame.
    pub const fn frame_bytes(&self) -> u64 {
        self.image_size * self.image_size * self.channels * self.video_dtype.size()
    }

    /// Bytes of the whole video buffer.
    pub const fn video_bytes(&self) -> u64 {
        self.frames() * self.frame_bytes()
    }
}

/// One model's line in the plan input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelBudget {
    /// Owner name (`"flux"`, …).
    pub name: String,
    /// Configured budget: weights plus the model's own working memory.
    pub budget: u64,
    /// Bytes of the weights the model's checkpoint layout holds.
    pub weight_bytes: u64,
    /// Weights it keeps in host memory and runs on the CPU.
    pub cpu_weights: Option<CpuWeights>,
}

impl ModelBudget {
    /// The line of a model: its name, budget and weight bytes.
    pub fn of(model: &dyn crate::Model) -> Self {
        ModelBudget {
            name: model.name().to_owned(),
            budget: model.budget(),
            weight_bytes: model.weight_bytes(),
            cpu_weights: model.cpu_weights(),
        }
    }
}

/// What the plan is made from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanConfig {
    /// Every model.
    pub models: Vec<ModelBudget>,
    /// Output buffer shapes and placement.
    pub buffers: OutputBuffers,
    /// Scratch region bytes.
    pub scratch: u64,
    /// Bytes the driver context holds on the device.
    pub context_reserve: u64,
    /// Soft and hard limits.
    pub limits: Limits,
    /// The device's total memory.
    pub device_capacity: u64,
}

/// One owner in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    /// Owner name.
    pub owner: String,
    /// What for.
    pub purpose: Purpose,
    /// Where.
    pub placement: Placement,
    /// Bytes on the device (0 for host-resident entries).
    pub device_bytes: u64,
    /// Bytes in pinned host memory.
    pub host_bytes: u64,
    /// For a model: the bytes of its checkpoint's weights, beside its budget.
    pub weight_bytes: Option<u64>,
    /// For a model: weights it keeps in host memory and runs on the CPU (not device bytes).
    pub cpu_weights: Option<CpuWeights>,
}

/// The computed plan. Build with [`VramPlan::new`]; [`VramPlan::check`] refuses one that does
/// not fit. Displays as a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VramPlan {
    /// Every owner, models first.
    pub entries: Vec<PlanEntry>,
    /// Soft and hard limits.
    pub limits: Limits,
    /// The device's total memory.
    pub device_capacity: u64,
}

/// Owner names of the buffers and reserves the plan adds.
pub mod owners {
    /// The actor image buffer.
    pub const ACTOR: &str = "actor_buffer";
    /// The audio waveform buffer.
    pub const AUDIO: &str = "audio_buffer";
    /// The video buffer (or its staging ring when the video lives on the host).
    pub const VIDEO: &str = "video_buffer";
    /// The scratch region.
    pub const SCRATCH: &str = "scratch";
    /// The driver context.
    pub const CONTEXT: &str = "cuda_context";
}

impl VramPlan {
    /// Lays out every owner's bytes.
    pub fn new(config: &PlanConfig) -> Self {
        let b = &config.buffers;
        let mut entries: Vec<PlanEntry> = config
            .models
            .iter()
            .map(|m| PlanEntry {
                owner: m.name.clone(),
                purpose: Purpose::ModelWeights,
                placement: Placement::Device,
                device_bytes: m.budget,
                host_bytes: 0,
                weight_bytes: Some(m.weight_bytes),
                cpu_weights: m.cpu_weights.clone(),
            })
            .collect();
        let device = |owner: &str, purpose, bytes| PlanEntry {
            owner: owner.to_owned(),
            purpose,
            placement: Placement::Device,
            device_bytes: bytes,
            host_bytes: 0,
            weight_bytes: None,
            cpu_weights: None,
        };
        entries.push(device(
            owners::ACTOR,
            Purpose::OutputBuffer,
            b.actor_bytes(),
        ));
        entries.push(device(
            owners::AUDIO,
            Purpose::OutputBuffer,
            b.audio_bytes(),
        ));
        entries.push(match b.video_placement {
            Placement::Device => device(owners::VIDEO, Purpose::OutputBuffer, b.video_bytes()),
            Placement::PinnedHost { staging_frames } => PlanEntry {
                owner: owners::VIDEO.to_owned(),
                purpose: Purpose::Staging,
                placement: b.video_placement,
                device_bytes: staging_frames * b.frame_bytes(),
                host_bytes: b.video_bytes(),
                weight_bytes: None,
                cpu_weights: None,
            },
        });
        entries.push(device(owners::SCRATCH, Purpose::Scratch, config.scratch));
        entries.push(device(
            owners::CONTEXT,
            Purpose::Context,
            config.context_reserve,
        ));
        VramPlan {
            entries,
            limits: config.limits,
            device_capacity: config.device_capacity,
        }
    }

    /// Bytes on the device, every owner.
    pub fn device_total(&self) -> u64 {
        // Saturating: budgets come from a file, and a saturated total is refused by check().
        self.entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.device_bytes))
    }

    /// Bytes in pinned host memory.
    pub fn host_total(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.host_bytes))
    }

    /// The entry of one owner.
    pub fn entry(&self, owner: &str) -> Option<&PlanEntry> {
        self.entries.iter().find(|e| e.owner == owner)
    }

    /// The arena this plan needs: everything on the device but the context and the scratch
    /// region goes in the static region.
    pub fn arena(&self) -> ArenaConfig {
        let scratch = self.entry(owners::SCRATCH).map_or(0, |e| e.device_bytes);
        let context = self.entry(owners::CONTEXT).map_or(0, |e| e.device_bytes);
        // Each static region is rounded up to 256 bytes: leave room for that.
        let rounding = self.entries.len() as u64 * vortex_vram::ALIGNMENT;
        ArenaConfig::new(self.device_total() - scratch - context + rounding, scratch)
    }

    /// Whether the usage the plan puts on the device passes the soft limit.
    pub fn above_soft_limit(&self) -> bool {
        self.device_total() > self.limits.soft()
    }

    /// Refuses a plan that cannot work, with the arithmetic and what to change: a model whose
    /// budget is below its own weights, a total above the hard limit, a total above the
    /// device's capacity.
    pub fn check(&self) -> Result<(), InitError> {
        for e in &self.entries {
            if let Some(weights) = e.weight_bytes.filter(|&w| w > e.device_bytes) {
                return Err(InitError::BudgetBelowWeights {
                    model: e.owner.clone(),
                    budget: e.device_bytes,
                    weights,
                });
            }
        }
        let total = self.device_total();
        let (limit, what) = if self.device_capacity < self.limits.hard() {
            (self.device_capacity, "the device's capacity")
        } else {
            (self.limits.hard(), "the hard limit")
        };
        if total > limit {
            return Err(InitError::PlanDoesNotFit {
                total,
                limit,
                limit_name: what,
                excess: total - limit,
                remediation: self.remediation(total - limit),
                plan: Box::new(self.clone()),
            });
        }
        Ok(())
    }

    fn remediation(&self, excess: u64) -> String {
        let mut options = Vec::new();
        if let Some(video) = self.entry(owners::VIDEO)
            && video.placement == Placement::Device
        {
            options.push(format!(
                "put the video buffer ({}) in pinned host memory with a device staging ring of a few frames (buffers.video_placement = \"pinned_host\", buffers.staging_frames = 24)",
                Bytes(video.device_bytes)
            ));
        }
        if let Some(scratch) = self.entry(owners::SCRATCH).filter(|e| e.device_bytes > 0) {
            options.push(format!(
                "shrink the scratch region (vram.scratch, now {})",
                Bytes(scratch.device_bytes)
            ));
        }
        options.push("lower a model budget (models.NAME.budget)".to_owned());
        options.push("raise vram.hard_limit if the device has room".to_owned());
        format!(
            "free at least {} ({} bytes): {}",
            Bytes(excess),
            excess,
            options.join("; or ")
        )
    }
}

impl fmt::Display for VramPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:<14} {:<12} {:>16} {:>12} {:>12}",
            "owner", "purpose", "placement", "device bytes", "device", "weights"
        )?;
        for e in &self.entries {
            let placement = match e.placement {
                Placement::Device => "device".to_owned(),
                Placement::PinnedHost { staging_frames } => format!("host+{staging_frames}f"),
            };
            writeln!(
                f,
                "{:<14} {:<14} {:<12} {:>16} {:>12} {:>12}",
                e.owner,
                e.purpose.as_str(),
                placement,
                e.device_bytes,
                Bytes(e.device_bytes).to_string(),
                e.weight_bytes
                    .map_or(String::new(), |w| Bytes(w).to_string()),
            )?;
        }
        let total = self.device_total();
        writeln!(
            f,
            "{:<14} {:<14} {:<12} {:>16} {:>12}",
            "total",
            "",
            "",
            total,
            Bytes(total).to_string()
        )?;
        if self.host_total() > 0 {
            writeln!(f, "pinned host memory: {}", Bytes(self.host_total()))?;
        }
        for e in &self.entries {
            if let Some(cpu) = &e.cpu_weights {
                writeln!(
                    f,
                    "host memory, run on the CPU: {} ({}: {})",
                    Bytes(cpu.bytes),
                    e.owner,
                    cpu.what
                )?;
            }
        }
        let hard = self.limits.hard();
        write!(
            f,
            "soft limit {} ({}), hard limit {} ({}), device {}",
            Bytes(self.limits.soft()),
            if total > self.limits.soft() {
                "above"
            } else {
                "below"
            },
            Bytes(hard),
            if total > hard {
                format!("{} over", Bytes(total - hard))
            } else {
                format!("{} headroom", Bytes(hard - total))
            },
            Bytes(self.device_capacity)
        )
    }
}
