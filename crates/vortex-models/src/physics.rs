//! The slot's physics: what each stage must compute, the peak rates of the devices Vortex plans
//! for, and the least time (the floor) a stage can take on one of them.
//!
//! - [`CountedWork`]: one slot's work per stage, counted from the networks' ONNX graphs by
//!   `data/work/count_work.py` and written by `data/work/slot_work.py` into
//!   `data/work/slot_work.json`, compiled in. Each graph's multiply-adds and weight bytes per
//!   call, and how its calls grow with the slot ([`Per`]): Kokoro's pieces with the seconds,
//!   LivePortrait's per-frame graphs with the frames, CLIP's image tower with the verified
//!   frames. What the count cannot scale is stated, not guessed: the image size (512²) and
//!   FLUX's 4 steps stay as counted.
//! - [`DevicePeaks`]: dense peak rates (tensor fp16 with fp16 and with fp32 accumulate, INT8,
//!   INT4, fp32 without tensor cores) and memory bandwidth of the cards in [`DevicePeaks::ALL`],
//!   each figure with its source; `[device] host_preset` picks the row
//!   ([`DevicePeaks::by_preset`]). An unknown preset has no row, and so no floor.
//! - [`Floor`]: the larger of work / peak rate and weight bytes / bandwidth; [`SlotFloors`]:
//!   every stage's floor on one device and the critical path's ([`crate::cost::critical_path`]);
//!   [`FrameBudget`]: what a video stage given some seconds can afford per frame.
//!
//! A floor is a lower bound: peak rates are never reached, the elementwise work and the
//! activations' memory traffic are not in it, and a stage that runs on the CPU (Kokoro's int8
//! graph) is given the GPU's rate.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::cost::{SlotWork, critical_path};
use crate::stage::{Stage, StageMap};

/// `data/work/slot_work.json`, as `data/work/slot_work.py` wrote it.
pub const SLOT_WORK_JSON: &str = include_str!("../data/work/slot_work.json");

/// A peak rate of a device: which arithmetic, on which units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    /// Tensor cores, fp16 inputs, fp16 accumulate.
    Fp16Acc16,
    /// Tensor cores, fp16 or bf16 inputs, fp32 accumulate.
    Fp16Acc32,
    /// Tensor cores, INT8.
    Int8,
    /// Tensor cores, INT4.
    Int4,
    /// fp32 on the CUDA cores (no tensor cores).
    Fp32,
}

impl Rate {
    /// The rate in words.
    pub const fn label(self) -> &'static str {
        match self {
            Rate::Fp16Acc16 => "fp16 tensor, fp16 accumulate",
            Rate::Fp16Acc32 => "fp16 tensor, fp32 accumulate",
            Rate::Int8 => "int8 tensor",
            Rate::Int4 => "int4 tensor",
            Rate::Fp32 => "fp32, no tensor cores",
        }
    }

    /// The short name in documents (`fp16_acc16`, `int8`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Rate::Fp16Acc16 => "fp16_acc16",
            Rate::Fp16Acc32 => "fp16_acc32",
            Rate::Int8 => "int8",
            Rate::Int4 => "int4",
            Rate::Fp32 => "fp32",
        }
    }

    /// The unit its figures are in: TOPS for the integer rates, TFLOP/s for the others.
    pub const fn unit(self) -> &'static str {
        match self {
            Rate::Int8 | Rate::Int4 => "TOPS",
            _ => "TFLOP/s",
        }
    }
}

/// A device's dense peak rates (not the 2:4 sparse ones NVIDIA often prints first) and its
/// memory bandwidth. Rates in tera-operations a second (a multiply-add is two), bandwidth in
/// GB/s (10⁹ bytes). `None`: the device has no such tensor path.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DevicePeaks {
    /// The `[device] host_preset` that names it (`rtx3060-12gb`).
    pub preset: &'static str,
    /// The card.
    pub name: &'static str,
    /// Tensor fp16 with fp16 accumulate, TFLOP/s.
    pub fp16_acc16_tflops: Option<f64>,
    /// Tensor fp16/bf16 with fp32 accumulate, TFLOP/s.
    pub fp16_acc32_tflops: Option<f64>,
    /// Tensor INT8, TOPS.
    pub int8_tops: Option<f64>,
    /// Tensor INT4, TOPS.
    pub int4_tops: Option<f64>,
    /// fp32 without tensor cores, TFLOP/s.
    pub fp32_tflops: f64,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbs: f64,
}

impl DevicePeaks {
    /// GeForce RTX 3060 12 GB (GA106: 28 SMs, 112 tensor cores, 1.777 GHz boost, 192-bit
    /// GDDR6 at 15 Gbps).
    pub const RTX_3060_12GB: DevicePeaks = DevicePeaks {
        preset: "rtx3060-12gb",
        name: "RTX 3060 12 GiB",
        // DESIGN.md §6d. The GA106 has no whitepaper of its own; the figure is the GA102
        // whitepaper's GA10x tensor core (256 dense fp16 FLOP a clock with fp16 accumulate)
        // × 112 tensor cores × 1.777 GHz = 50.9, and half NVIDIA's "101 tensor-TFLOPs"
        // (sparse) launch figure.
        fp16_acc16_tflops: Some(51.0),
        // DESIGN.md §6d: GeForce GA10x runs fp32 accumulate at half rate (the GA102
        // whitepaper's RTX 3090 table: 71 against 142).
        fp16_acc32_tflops: Some(25.5),
        // DESIGN.md §6d: twice the fp16 rate (GA102 whitepaper's GA10x tensor core).
        int8_tops: Some(102.0),
        // Twice INT8 on GA10x (GA102 whitepaper, RTX 3090: 568 against 284); no published
        // RTX 3060 table found: unverified.
        int4_tops: Some(204.0),
        // 3,584 CUDA cores × 2 × 1.777 GHz (NVIDIA's RTX 3060 specifications: cores, boost).
        fp32_tflops: 12.7,
        // NVIDIA's RTX 3060 specifications: 192-bit at 15 Gbps = 360 GB/s; DESIGN.md §6d.
        bandwidth_gbs: 360.0,
    };

    /// GeForce RTX 3090 (GA102).
    pub const RTX_3090: DevicePeaks = DevicePeaks {
        preset: "rtx3090-24gb",
        name: "RTX 3090 24 GiB",
        // NVIDIA Ampere GA102 GPU Architecture whitepaper, Appendix A, GeForce RTX 3090:
        // "Peak FP16 Tensor TFLOPS with FP16 Accumulate 142/284" (dense/sparse); 142 also in
        // Tom's Hardware's specification table.
        fp16_acc16_tflops: Some(142.0),
        // Same table: "with FP32 Accumulate 71/142".
        fp16_acc32_tflops: Some(71.0),
        // Same table: "Peak INT8 Tensor TOPS 284/568".
        int8_tops: Some(284.0),
        // Same table: "Peak INT4 Tensor TOPS 568/1136".
        int4_tops: Some(568.0),
        // Same table: 35.6 (also NVIDIA's launch material, 35.7).
        fp32_tflops: 35.6,
        // Same table: 936 GB/s (384-bit GDDR6X at 19.5 Gbps).
        bandwidth_gbs: 936.0,
    };

    /// GeForce RTX 4090 (AD102).
    pub const RTX_4090: DevicePeaks = DevicePeaks {
        preset: "rtx4090-24gb",
        name: "RTX 4090 24 GiB",
        // NVIDIA Ada GPU Architecture whitepaper, Appendix A, GeForce RTX 4090: "Peak FP16
        // Tensor TFLOPS with FP16 Accumulate 330.3/660.6".
        fp16_acc16_tflops: Some(330.3),
        // Same table: "with FP32 Accumulate 165.2/330.4" (165.15 also in waredb's table).
        fp16_acc32_tflops: Some(165.2),
        // Same table: "Peak INT8 Tensor TOPS 660.6/1321.2".
        int8_tops: Some(660.6),
        // Same table: "Peak INT4 Tensor TOPS 1321.2/2642.4".
        int4_tops: Some(1321.2),
        // Same table: 82.6.
        fp32_tflops: 82.6,
        // Same table: 1,008 GB/s (384-bit GDDR6X at 21 Gbps).
        bandwidth_gbs: 1008.0,
    };

    /// A100 80GB SXM (GA100).
    pub const A100_80GB_SXM: DevicePeaks = DevicePeaks {
        preset: "a100-80gb",
        name: "A100 80GB SXM",
        // NVIDIA A100 datasheet: "FP16 Tensor Core 312 TFLOPS | 624 TFLOPS*" (* sparse);
        // the data-centre tensor cores accumulate fp16 in fp32 at the same rate.
        fp16_acc16_tflops: Some(312.0),
        // Same datasheet: "BFLOAT16 Tensor Core 312 TFLOPS".
        fp16_acc32_tflops: Some(312.0),
        // Same datasheet: "INT8 Tensor Core 624 TOPS | 1248 TOPS*".
        int8_tops: Some(624.0),
        // NVIDIA Ampere (GA100) architecture whitepaper: INT4 1,248 TOPS dense.
        int4_tops: Some(1248.0),
        // Same datasheet: "FP32 19.5 TFLOPS".
        fp32_tflops: 19.5,
        // Same datasheet, A100 80GB SXM: 2,039 GB/s.
        bandwidth_gbs: 2039.0,
    };

    /// H100 SXM5 80 GB (GH100).
    pub const H100_SXM: DevicePeaks = DevicePeaks {
        preset: "h100-80gb",
        name: "H100 SXM 80GB",
        // NVIDIA H100 datasheet: "FP16 Tensor Core 1,979 teraFLOPS*" with "* with sparsity"
        // (dense is half: 989.4, the Hopper whitepaper's figure); fp16 and fp32 accumulate
        // run at the same rate.
        fp16_acc16_tflops: Some(989.4),
        // Same datasheet: "BFLOAT16 Tensor Core 1,979 teraFLOPS*" → 989.4 dense.
        fp16_acc32_tflops: Some(989.4),
        // Same datasheet: "INT8 Tensor Core 3,958 TOPS*" → 1,978.9 dense.
        int8_tops: Some(1978.9),
        // Hopper's tensor cores have no INT4 path (the datasheet and the Hopper whitepaper
        // list none).
        int4_tops: None,
        // Same datasheet: "FP32 67 teraFLOPS" (66.9 in the Hopper whitepaper).
        fp32_tflops: 66.9,
        // Same datasheet: "GPU memory bandwidth 3.35TB/s".
        bandwidth_gbs: 3350.0,
    };

    /// Every device the plan knows, the RTX 3060 first.
    pub const ALL: &'static [DevicePeaks] = &[
        Self::RTX_3060_12GB,
        Self::RTX_3090,
        Self::RTX_4090,
        Self::A100_80GB_SXM,
        Self::H100_SXM,
    ];

    /// The presets of [`DevicePeaks::ALL`].
    pub fn presets() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|d| d.preset)
    }

    /// The row `[device] host_preset = PRESET` names; `None` for a preset the table does not
    /// know (the plan then has no floor, and says so).
    pub fn by_preset(preset: &str) -> Option<&'static DevicePeaks> {
        Self::ALL.iter().find(|d| d.preset == preset)
    }

    /// `rate` in operations a second, where the device has it.
    pub fn rate(&self, rate: Rate) -> Option<f64> {
        let tera = match rate {
            Rate::Fp16Acc16 => self.fp16_acc16_tflops,
            Rate::Fp16Acc32 => self.fp16_acc32_tflops,
            Rate::Int8 => self.int8_tops,
            Rate::Int4 => self.int4_tops,
            Rate::Fp32 => Some(self.fp32_tflops),
        };
        tera.map(|t| t * 1e12)
    }

    /// `rate` where the device has it, else fp32 without tensor cores (which every device
    /// has): the rate taken and its operations a second.
    pub fn rate_or_fp32(&self, rate: Rate) -> (Rate, f64) {
        match self.rate(rate) {
            Some(ops) => (rate, ops),
            None => (Rate::Fp32, self.fp32_tflops * 1e12),
        }
    }

    /// Memory bandwidth, bytes a second.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth_gbs * 1e9
    }
}

/// How a graph's calls grow with the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// As counted, whatever the slot's length (the extractors on the source image; FLUX's 4
    /// steps, which the configuration does not change).
    Slot,
    /// With the slot's seconds of speech (Kokoro's pieces; the count itself was scaled this
    /// way from 48.83 s of counted speech to 45 s).
    Second,
    /// Once per video frame.
    Frame,
    /// Once per verified frame, all in one batch: the weights are read once.
    VerifiedFrame,
}

/// What a stage's matrices compute in on the path the plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// Float graphs: fp16 on the GPU (the CUDA exports; FLUX's 4-bit weights are expanded
    /// to fp16 by MatMulNBits). The floor takes an fp16 rate the caller chooses.
    Fp16,
    /// Kokoro's int8 graph (MatMulInteger / ConvInteger): INT8.
    Int8,
}

/// One graph of a stage, per call.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphWork {
    /// The graph (`warping_spade`, `vision`, ...).
    pub name: String,
    /// How its calls grow with the slot.
    pub per: Per,
    /// Its calls in the counted slot.
    pub counted_calls: f64,
    /// Multiply-adds a call.
    pub macs: f64,
    /// Elementwise operations a call.
    pub elementwise: f64,
    /// Weight bytes a call reads, at the precision the plan's path reads them (fp16 for the
    /// float graphs, FLUX's shipped 4-bit, Kokoro's int8 graph as it is).
    pub weight_bytes: f64,
}

impl GraphWork {
    /// Its calls in `slot`, counted at `counted`.
    pub fn calls(&self, slot: SlotWork, counted: &CountedSlot) -> f64 {
        match self.per {
            Per::Slot => self.counted_calls,
            Per::Second => self.counted_calls * slot.seconds as f64 / counted.seconds as f64,
            Per::Frame => slot.frames as f64,
            Per::VerifiedFrame => slot.verified_frames as f64,
        }
    }

    /// Times its weights are read in `slot` (a batch reads them once).
    pub fn weight_reads(&self, slot: SlotWork, counted: &CountedSlot) -> f64 {
        let calls = self.calls(slot, counted);
        match self.per {
            Per::VerifiedFrame => calls.min(1.0),
            _ => calls,
        }
    }
}

/// The slot the figures were counted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct CountedSlot {
    /// Seconds of speech and video.
    pub seconds: u64,
    /// Frames a second.
    pub fps: u64,
    /// Video frames.
    pub frames: u64,
    /// Side of the output frames and the actor image, pixels.
    pub image: u64,
    /// Frames CLIP verifies.
    pub verified_frames: u64,
    /// FLUX's denoising steps.
    pub flux_steps: u64,
}

impl CountedSlot {
    /// The counted slot as a [`SlotWork`].
    pub fn work(&self) -> SlotWork {
        SlotWork {
            seconds: self.seconds,
            frames: self.frames,
            verified_frames: self.verified_frames,
        }
    }
}

/// One stage's graphs as counted.
#[derive(Debug, Clone, PartialEq)]
pub struct StageCount {
    /// Its graphs.
    pub graphs: Vec<GraphWork>,
    /// What its matrices compute in.
    pub compute: Compute,
    /// Whether the stage runs on the CPU even when the others run on the GPU (Kokoro's int8
    /// graph: ONNX Runtime's CUDA provider has no kernels for ConvInteger,
    /// DynamicQuantizeLinear, DynamicQuantizeLSTM or STFT; DESIGN.md §6c).
    pub on_cpu: bool,
}

/// A stage's work in one slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageWork {
    /// Multiply-adds.
    pub macs: f64,
    /// Elementwise operations (not in the floor).
    pub elementwise: f64,
    /// Weight bytes read.
    pub weight_bytes: f64,
    /// What its matrices compute in.
    pub compute: Compute,
    /// Whether it runs on the CPU.
    pub on_cpu: bool,
}

impl StageWork {
    /// Floating-point (or integer) operations: a multiply-add is two.
    pub fn flop(&self) -> f64 {
        2.0 * self.macs
    }
}

/// LivePortrait's frame split by module (`warping_spade.onnx` per node scope).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSplit {
    /// The warping module's multiply-adds.
    pub warping_macs: f64,
    /// The SPADE generator's.
    pub spade_macs: f64,
}

/// Why `slot_work.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// Not the document `slot_work.py` writes.
    #[error("slot_work.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A graph this module does not know how to scale.
    #[error(
        "slot_work.json: stage {stage}'s graph {graph:?} is not one the plan knows how to scale: add it to physics::per"
    )]
    UnknownGraph {
        /// The stage.
        stage: Stage,
        /// The graph.
        graph: String,
    },
    /// A figure the plan reads is missing or inconsistent.
    #[error("slot_work.json: stage {stage}: {what}")]
    Inconsistent {
        /// The stage.
        stage: Stage,
        /// What is wrong.
        what: String,
    },
}

/// One slot's work per stage, counted from the graphs.
#[derive(Debug, Clone, PartialEq)]
pub struct CountedWork {
    /// The slot counted.
    pub slot: CountedSlot,
    /// Each stage's graphs.
    pub stages: StageMap<StageCount>,
    /// LivePortrait's frame by module.
    pub frame: FrameSplit,
}

impl CountedWork {
    /// The compiled-in count (`data/work/slot_work.json`), parsed once.
    pub fn shipped() -> &'static CountedWork {
        static SHIPPED: OnceLock<CountedWork> = OnceLock::new();
        SHIPPED.get_or_init(|| {
            // The compiled-in file is parsed by this module's tests, so it always parses.
            Self::parse(SLOT_WORK_JSON).unwrap_or_else(|err| {
                unreachable!("the compiled-in slot_work.json is tested to parse: {err}")
            })
        })
    }

    /// Reads a `slot_work.json`.
    pub fn parse(text: &str) -> Result<Self, WorkError> {
        let raw: RawFile = serde_json::from_str(text)?;
        let slot = raw.slot;
        let stages = StageMap::try_from_fn(|stage| {
            let raw = match stage {
                Stage::Audio => &raw.stages.audio,
                Stage::Actor => &raw.stages.actor,
                Stage::Video => &raw.stages.video,
                Stage::ClipB => &raw.stages.clip_b,
                Stage::ClipL => &raw.stages.clip_l,
            };
            stage_count(stage, raw, &slot)
        })?;
        let warping_spade = raw.stages.video.graphs.get("warping_spade");
        let scope = |name: &str| {
            warping_spade
                .and_then(|g| g.per_scope.as_ref())
                .and_then(|s| s.get(name))
                .map(|s| s.macs as f64)
                .ok_or_else(|| WorkError::Inconsistent {
                    stage: Stage::Video,
                    what: format!("no per_scope.{name} on warping_spade"),
                })
        };
        let frame = FrameSplit {
            warping_macs: scope("warping_module")?,
            spade_macs: scope("spade_generator")?,
        };
        Ok(CountedWork {
            slot,
            stages,
            frame,
        })
    }

    /// `stage`'s work in `slot`: each graph's work a call × its calls, weights × their reads.
    pub fn work(&self, stage: Stage, slot: SlotWork) -> StageWork {
        let count = &self.stages[stage];
        let (mut macs, mut elementwise, mut weight_bytes) = (0.0, 0.0, 0.0);
        for g in &count.graphs {
            let calls = g.calls(slot, &self.slot);
            macs += g.macs * calls;
            elementwise += g.elementwise * calls;
            weight_bytes += g.weight_bytes * g.weight_reads(slot, &self.slot);
        }
        StageWork {
            macs,
            elementwise,
            weight_bytes,
            compute: count.compute,
            on_cpu: count.on_cpu,
        }
    }

    /// Multiply-adds a call of `stage`'s graphs that scale `per` way, summed (the video's
    /// `Per::Frame`: one frame's; its `Per::Slot`: the source image's, once).
    pub fn macs_per(&self, stage: Stage, per: Per) -> f64 {
        self.stages[stage]
            .graphs
            .iter()
            .filter(|g| g.per == per)
            .map(|g| g.macs)
            .sum()
    }
}

/// How each graph's calls grow with the slot; `None` for a graph the plan does not know.
fn per(stage: Stage, graph: &str) -> Option<Per> {
    match (stage, graph) {
        (Stage::Audio, "kokoro") => Some(Per::Second),
        (Stage::Actor, "transformer" | "t5" | "clip_text" | "vae_decoder") => Some(Per::Slot),
        (Stage::Video, "appearance_feature_extractor" | "motion_extractor") => Some(Per::Slot),
        (Stage::Video, "warping_spade" | "stitching" | "retarget_lip" | "retarget_eye") => {
            Some(Per::Frame)
        }
        (Stage::ClipB | Stage::ClipL, "vision") => Some(Per::VerifiedFrame),
        (Stage::ClipB | Stage::ClipL, "text") => Some(Per::Slot),
        _ => None,
    }
}

fn stage_count(stage: Stage, raw: &RawStage, slot: &CountedSlot) -> Result<StageCount, WorkError> {
    let inconsistent = |what: String| WorkError::Inconsistent { stage, what };
    let compute = match raw.precision.as_str() {
        "int8" => Compute::Int8,
        // The float graphs were counted in float32; the GPU path runs their fp16 exports.
        "float32" | "float16" => Compute::Fp16,
        other => return Err(inconsistent(format!("unknown precision {other:?}"))),
    };
    // Weight bytes a call on the plan's path: FLUX's shipped 4-bit figures where given; the
    // fp16 share of the float graphs' bytes where the stage gives its fp16 total; else as
    // counted (Kokoro's int8 graph).
    let fp16_share = match raw.weight_bytes_read_fp16 {
        Some(fp16) if raw.weight_bytes_read > 0 => fp16 as f64 / raw.weight_bytes_read as f64,
        _ => 1.0,
    };
    let mut graphs = Vec::new();
    for (name, g) in &raw.graphs {
        let per = per(stage, name).ok_or_else(|| WorkError::UnknownGraph {
            stage,
            graph: name.clone(),
        })?;
        let counted_calls = *raw
            .calls_per_slot
            .get(name)
            .ok_or_else(|| inconsistent(format!("no calls_per_slot.{name}")))?;
        let expected = match per {
            Per::Frame => Some(slot.frames as f64),
            Per::VerifiedFrame => Some(slot.verified_frames as f64),
            Per::Slot | Per::Second => None,
        };
        if let Some(expected) = expected
            && counted_calls != expected
        {
            return Err(inconsistent(format!(
                "{name} counted {counted_calls} calls, the slot has {expected}"
            )));
        }
        let weight_bytes = match &raw.weight_bytes_shipped_per_call {
            Some(shipped) => *shipped
                .get(name)
                .ok_or_else(|| inconsistent(format!("no weight_bytes_shipped_per_call.{name}")))?
                as f64,
            None => g.weight_bytes as f64 * fp16_share,
        };
        let (macs, elementwise) = match per {
            // Kokoro's graph figures are sums over the pieces counted (48.83 s of speech),
            // the stage's are scaled to the slot's 45 s: a call is the stage's share.
            Per::Second => (
                raw.macs as f64 / counted_calls,
                raw.elementwise as f64 / counted_calls,
            ),
            _ => (g.macs as f64, g.elementwise as f64),
        };
        graphs.push(GraphWork {
            name: name.clone(),
            per,
            counted_calls,
            macs,
            elementwise,
            weight_bytes,
        });
    }
    if graphs.is_empty() {
        return Err(inconsistent("no graphs".to_owned()));
    }
    Ok(StageCount {
        graphs,
        compute,
        on_cpu: stage == Stage::Audio,
    })
}

/// The least time some work can take on a device: its operations at the peak rate, and its
/// bytes at the memory bandwidth; the larger of the two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor {
    /// Operations / peak rate, seconds.
    pub compute_s: f64,
    /// Bytes / bandwidth, seconds.
    pub memory_s: f64,
}

impl Floor {
    /// The floor of `ops` operations and `bytes` bytes at `ops_per_s` and `bytes_per_s`.
    pub fn of(ops: f64, bytes: f64, ops_per_s: f64, bytes_per_s: f64) -> Floor {
        Floor {
            compute_s: ops / ops_per_s,
            memory_s: bytes / bytes_per_s,
        }
    }

    /// The floor: the larger of the two, seconds.
    pub fn seconds(&self) -> f64 {
        self.compute_s.max(self.memory_s)
    }

    /// Whether the work is bound by compute (else by memory).
    pub fn compute_bound(&self) -> bool {
        self.compute_s >= self.memory_s
    }
}

/// One stage's floor on a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageFloor {
    /// The work.
    pub work: StageWork,
    /// The rate taken.
    pub rate: Rate,
    /// That rate, operations a second.
    pub ops_per_s: f64,
    /// The floor.
    pub floor: Floor,
}

/// Every stage's floor on one device, and the critical path's.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotFloors {
    /// The device.
    pub device: &'static DevicePeaks,
    /// The fp16 rate the float stages were given.
    pub fp16: Rate,
    /// Each stage's floor.
    pub stages: StageMap<StageFloor>,
    /// The critical path over the floors, seconds.
    pub critical_path_s: f64,
}

impl SlotFloors {
    /// The floors of `work` in `slot` on `device`, float stages at `fp16`
    /// ([`Rate::Fp16Acc16`] or [`Rate::Fp16Acc32`]), int8 ones at [`Rate::Int8`] (either
    /// falling back to fp32 where the device lacks it).
    pub fn new(
        work: &CountedWork,
        slot: SlotWork,
        device: &'static DevicePeaks,
        fp16: Rate,
    ) -> Self {
        let stages = StageMap::from_fn(|stage| {
            let w = work.work(stage, slot);
            let (rate, ops_per_s) = device.rate_or_fp32(match w.compute {
                Compute::Fp16 => fp16,
                Compute::Int8 => Rate::Int8,
            });
            StageFloor {
                work: w,
                rate,
                ops_per_s,
                floor: Floor::of(w.flop(), w.weight_bytes, ops_per_s, device.bandwidth()),
            }
        });
        SlotFloors {
            device,
            fp16,
            critical_path_s: critical_path(|stage| stages[stage].floor.seconds()),
            stages,
        }
    }

    /// The seconds left to the video stage within `deadline_s` when every other stage on the
    /// critical path takes its floor (the most video can ever have); 0 when none is left.
    pub fn video_share(&self, deadline_s: f64) -> f64 {
        let others = self.critical_path_s - self.stages[Stage::Video].floor.seconds();
        (deadline_s - others).max(0.0)
    }
}

/// What a video stage given `video_s` seconds can afford at a peak rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameBudget {
    /// Seconds for the video stage.
    pub video_s: f64,
    /// Operations a frame it can afford for the slot's frames, less the once-per-slot work.
    pub ops_per_frame: f64,
    /// Frames at today's cost a frame it can afford (whole frames).
    pub full_frames: f64,
    /// Those frames per second of video.
    pub full_frames_per_second: f64,
}

impl FrameBudget {
    /// The budget of `video_s` seconds at `ops_per_s`, for `frames` frames over `seconds`
    /// seconds, each costing `frame_ops` after `once_ops` of once-per-slot work.
    pub fn new(
        video_s: f64,
        ops_per_s: f64,
        once_ops: f64,
        frame_ops: f64,
        frames: u64,
        seconds: u64,
    ) -> Self {
        let available = (video_s * ops_per_s - once_ops).max(0.0);
        let full_frames = if frame_ops > 0.0 {
            (available / frame_ops).floor()
        } else {
            f64::INFINITY
        };
        FrameBudget {
            video_s,
            ops_per_frame: available / frames.max(1) as f64,
            full_frames,
            full_frames_per_second: full_frames / seconds.max(1) as f64,
        }
    }
}

#[derive(Deserialize)]
struct RawFile {
    slot: CountedSlot,
    stages: RawStages,
}

#[derive(Deserialize)]
struct RawStages {
    audio: RawStage,
    actor: RawStage,
    video: RawStage,
    clip_b: RawStage,
    clip_l: RawStage,
}

#[derive(Deserialize)]
struct RawStage {
    macs: u64,
    elementwise: u64,
    weight_bytes_read: u64,
    precision: String,
    calls_per_slot: BTreeMap<String, f64>,
    graphs: BTreeMap<String, RawGraph>,
    #[serde(default)]
    weight_bytes_read_fp16: Option<u64>,
    #[serde(default)]
    weight_bytes_shipped_per_call: Option<BTreeMap<String, u64>>,
}

#[derive(Deserialize)]
struct RawGraph {
    macs: u64,
    elementwise: u64,
    weight_bytes: u64,
    #[serde(default)]
    per_scope: Option<BTreeMap<String, RawScope>>,
}

#[derive(Deserialize)]
struct RawScope {
    macs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: SlotWork = SlotWork {
        seconds: 45,
        frames: 1080,
        verified_frames: 8,
    };

    fn within(found: f64, expected: f64, tolerance: f64) -> bool {
        (found - expected).abs() <= tolerance * expected.abs()
    }

    /// The independent count of LivePortrait's warping + SPADE at 256 → 512 (DESIGN.md §6d):
    /// about 617 GMAC a frame, warping about 171 and SPADE about 446. The counter lands
    /// within 10% of each.
    #[test]
    fn liveportrait_per_frame_matches_the_independent_count() {
        let work = CountedWork::shipped();
        let frame = work.macs_per(Stage::Video, Per::Frame);
        // warping_spade plus the stitching and retargeting MLPs (a few hundred kMAC).
        assert!(within(frame, 617e9, 0.10), "{frame}");
        assert!(
            within(work.frame.warping_macs, 171e9, 0.10),
            "{:?}",
            work.frame
        );
        assert!(
            within(work.frame.spade_macs, 446e9, 0.10),
            "{:?}",
            work.frame
        );
        assert!(
            within(
                work.frame.warping_macs + work.frame.spade_macs,
                frame,
                0.001
            ),
            "the two modules are the frame"
        );
        // At the shipped slot: 1,080 frames, about 1.33 PFLOP.
        let video = work.work(Stage::Video, SHIPPED);
        assert!(within(video.flop(), 1.33e15, 0.01), "{}", video.flop());
    }

    /// The stage totals slot_work.py wrote come back from the graphs at the counted slot
    /// (CLIP's weights once per batch, where slot_work.py counted them per frame).
    #[test]
    fn the_graphs_add_up_to_the_stage_totals() {
        let work = CountedWork::shipped();
        let raw: serde_json::Value = serde_json::from_str(SLOT_WORK_JSON).unwrap();
        let at = work.slot.work();
        assert_eq!(at, SHIPPED);
        for stage in Stage::ALL {
            let w = work.work(stage, at);
            let raw = &raw["stages"][stage.as_str()];
            let macs = raw["macs"].as_f64().unwrap();
            assert!(within(w.macs, macs, 1e-9), "{stage}: {} vs {macs}", w.macs);
            let elementwise = raw["elementwise"].as_f64().unwrap();
            assert!(within(w.elementwise, elementwise, 1e-9), "{stage}");
        }
        let bytes = |stage: Stage| work.work(stage, at).weight_bytes;
        let raw_bytes = |stage: &str, key: &str| raw["stages"][stage][key].as_f64().unwrap();
        // Kokoro's calls a slot are written to two decimals (6.45).
        assert!(within(
            bytes(Stage::Audio),
            raw_bytes("audio", "weight_bytes_read"),
            1e-3
        ));
        assert!(within(
            bytes(Stage::Actor),
            raw_bytes("actor", "weight_bytes_read_shipped"),
            1e-9
        ));
        assert!(within(
            bytes(Stage::Video),
            raw_bytes("video", "weight_bytes_read_fp16"),
            1e-9
        ));
        // CLIP: slot_work.py read the image tower's weights for each of the 8 frames; the
        // network runs them as one batch.
        for clip in ["clip_b", "clip_l"] {
            let graphs = &raw["stages"][clip]["graphs"];
            let once = (graphs["vision"]["weight_bytes"].as_f64().unwrap()
                + graphs["text"]["weight_bytes"].as_f64().unwrap())
                / 2.0;
            let stage = Stage::of_model(clip).unwrap();
            assert!(within(bytes(stage), once, 1e-9), "{clip}");
        }
    }

    /// The work at the slot's own shapes: video with the frames, CLIP with the verified
    /// frames, Kokoro with the seconds; FLUX as counted.
    #[test]
    fn work_scales_with_the_slot() {
        let work = CountedWork::shipped();
        let half = SlotWork {
            seconds: 45,
            frames: 540,
            verified_frames: 4,
        };
        let frame = work.macs_per(Stage::Video, Per::Frame);
        let once = work.macs_per(Stage::Video, Per::Slot);
        assert!(within(
            work.work(Stage::Video, half).macs,
            once + 540.0 * frame,
            1e-12
        ));
        let clip = |slot| work.work(Stage::ClipL, slot);
        let vision = work.macs_per(Stage::ClipL, Per::VerifiedFrame);
        assert!(within(
            clip(SHIPPED).macs - clip(half).macs,
            4.0 * vision,
            1e-12
        ));
        assert_eq!(
            clip(SHIPPED).weight_bytes,
            clip(half).weight_bytes,
            "one batch reads the weights once"
        );
        let short = SlotWork {
            seconds: 15,
            ..SHIPPED
        };
        assert!(within(
            work.work(Stage::Audio, short).macs * 3.0,
            work.work(Stage::Audio, SHIPPED).macs,
            1e-12
        ));
        assert_eq!(
            work.work(Stage::Actor, short),
            work.work(Stage::Actor, SHIPPED)
        );
        // The counts the issue notes, per slot: FLUX 37.8 TMAC, Kokoro 1.24 TMAC, CLIP B
        // 38.3 GMAC and L 654.8 GMAC.
        for (stage, macs) in [
            (Stage::Actor, 37.83e12),
            (Stage::Audio, 1.237e12),
            (Stage::ClipB, 38.25e9),
            (Stage::ClipL, 654.75e9),
        ] {
            assert!(
                within(work.work(stage, SHIPPED).macs, macs, 0.001),
                "{stage}"
            );
        }
    }

    #[test]
    fn a_document_that_is_not_the_count_is_refused() {
        assert!(matches!(CountedWork::parse("{}"), Err(WorkError::Json(_))));
        let renamed = SLOT_WORK_JSON.replace("\"warping_spade\"", "\"warp\"");
        let err = CountedWork::parse(&renamed).unwrap_err();
        assert!(
            matches!(&err, WorkError::UnknownGraph { stage: Stage::Video, graph } if graph == "warp"),
            "{err}"
        );
        let wrong_frames = SLOT_WORK_JSON.replacen("\"frames\": 1080", "\"frames\": 1000", 1);
        let err = CountedWork::parse(&wrong_frames).unwrap_err();
        assert!(err.to_string().contains("counted 1080 calls"), "{err}");
    }

    #[test]
    fn devices_by_preset() {
        let rtx3060 = DevicePeaks::by_preset("rtx3060-12gb").unwrap();
        assert_eq!(rtx3060, &DevicePeaks::RTX_3060_12GB);
        assert_eq!(DevicePeaks::ALL[0].preset, "rtx3060-12gb", "the 3060 first");
        assert_eq!(rtx3060.rate(Rate::Fp16Acc16), Some(51e12));
        assert_eq!(rtx3060.rate(Rate::Fp16Acc32), Some(25.5e12));
        assert_eq!(rtx3060.rate(Rate::Int8), Some(102e12));
        assert_eq!(rtx3060.bandwidth(), 360e9);
        for preset in DevicePeaks::presets() {
            assert_eq!(DevicePeaks::by_preset(preset).unwrap().preset, preset);
        }
        // An unknown preset has no row (and so no floor), and is no panic.
        assert!(DevicePeaks::by_preset("rtx5090-32gb").is_none());
        assert!(DevicePeaks::by_preset("").is_none());
        // Hopper has no INT4 path: the floor falls back to fp32 rather than inventing one.
        let h100 = DevicePeaks::by_preset("h100-80gb").unwrap();
        assert_eq!(h100.rate(Rate::Int4), None);
        let (rate, ops) = h100.rate_or_fp32(Rate::Int4);
        assert_eq!(rate, Rate::Fp32);
        assert!(within(ops, 66.9e12, 1e-12));
        for d in DevicePeaks::ALL {
            // Dense tensor rates: INT8 twice fp16, fp32 accumulate at most fp16's.
            let (acc16, acc32, int8) = (
                d.fp16_acc16_tflops.unwrap(),
                d.fp16_acc32_tflops.unwrap(),
                d.int8_tops.unwrap(),
            );
            assert!(within(int8, 2.0 * acc16, 0.01), "{}", d.name);
            assert!(acc32 <= acc16, "{}", d.name);
        }
    }

    /// work / peak against bytes / bandwidth, the larger one.
    #[test]
    fn a_floor_is_the_larger_of_compute_and_memory() {
        let compute = Floor::of(51e12, 36e9, 51e12, 360e9);
        assert_eq!((compute.compute_s, compute.memory_s), (1.0, 0.1));
        assert_eq!(compute.seconds(), 1.0);
        assert!(compute.compute_bound());
        let memory = Floor::of(5.1e12, 360e9, 51e12, 360e9);
        assert_eq!(memory.seconds(), 1.0);
        assert!(!memory.compute_bound());
    }

    /// On an RTX 3060 the video stage's floor alone is about 26 s at fp16 (1.33 PFLOP at 51
    /// TFLOP/s), past the 15 s deadline; the critical path adds the actor's and CLIP-L's.
    #[test]
    fn the_rtx3060_video_floor_is_past_the_deadline() {
        let floors = SlotFloors::new(
            CountedWork::shipped(),
            SHIPPED,
            &DevicePeaks::RTX_3060_12GB,
            Rate::Fp16Acc16,
        );
        let video = floors.stages[Stage::Video];
        assert_eq!(video.rate, Rate::Fp16Acc16);
        assert!(within(video.floor.seconds(), 26.1, 0.01), "{video:?}");
        assert!(video.floor.compute_bound(), "about 1,000 FLOP a byte");
        assert_eq!(floors.stages[Stage::Audio].rate, Rate::Int8);
        let s = |stage: Stage| floors.stages[stage].floor.seconds();
        assert_eq!(
            floors.critical_path_s,
            s(Stage::Audio).max(s(Stage::Actor))
                + s(Stage::Video)
                + s(Stage::ClipB).max(s(Stage::ClipL))
        );
        assert!(floors.critical_path_s > 15.0);
        // Everything but the video at its floor leaves it about 13.5 s of 15.
        let share = floors.video_share(15.0);
        assert!(within(
            share,
            15.0 - s(Stage::Actor) - s(Stage::ClipL),
            1e-12
        ));
        assert!(share > 13.0 && share < 14.0, "{share}");
        // With fp32 accumulate (25.5 TFLOP/s) the compute-bound floors double.
        let acc32 = SlotFloors::new(
            CountedWork::shipped(),
            SHIPPED,
            &DevicePeaks::RTX_3060_12GB,
            Rate::Fp16Acc32,
        );
        assert!(within(
            acc32.stages[Stage::Video].floor.seconds(),
            2.0 * video.floor.seconds(),
            1e-9
        ));
        assert_eq!(floors.video_share(1.0), 0.0, "nothing left, never negative");
    }

    /// With 10 s for video on an RTX 3060 at its peak: at most about 0.47 TFLOP a frame, or
    /// about 410 full frames (9 a second of video).
    #[test]
    fn ten_seconds_of_video_on_an_rtx3060() {
        let work = CountedWork::shipped();
        let budget = FrameBudget::new(
            10.0,
            51e12,
            2.0 * work.macs_per(Stage::Video, Per::Slot),
            2.0 * work.macs_per(Stage::Video, Per::Frame),
            1080,
            45,
        );
        assert!(within(budget.ops_per_frame, 0.47e12, 0.01), "{budget:?}");
        assert!(within(budget.full_frames, 413.0, 0.01), "{budget:?}");
        assert!(
            within(budget.full_frames_per_second, 9.2, 0.01),
            "{budget:?}"
        );
        let none = FrameBudget::new(0.0, 51e12, 1.0, 1.0, 1080, 45);
        assert_eq!((none.ops_per_frame, none.full_frames), (0.0, 0.0));
    }
}
