//! Checkpoint layouts: the names, dtypes and shapes of every tensor a published checkpoint
//! holds, generated from the architecture's hyperparameters rather than typed out.

use serde::Serialize;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum WeightDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Bytes; packed 4-bit codes (two per byte) and 8-bit quantized scales are stored as U8.
    U8,
    /// 64-bit integer (batch-norm step counters).
    I64,
    /// Signed bytes (int8-quantized weights).
    I8,
}

impl From<WeightDtype> for vortex_runtime::ElementType {
    fn from(dtype: WeightDtype) -> Self {
        match dtype {
            WeightDtype::F32 => vortex_runtime::ElementType::F32,
            WeightDtype::F16 => vortex_runtime::ElementType::F16,
            WeightDtype::BF16 => vortex_runtime::ElementType::BF16,
            WeightDtype::U8 => vortex_runtime::ElementType::U8,
            WeightDtype::I8 => vortex_runtime::ElementType::I8,
            WeightDtype::I64 => vortex_runtime::ElementType::I64,
        }
    }
}

impl WeightDtype {
    /// Bytes per element.
    pub const fn size(self) -> u64 {
        match self {
            WeightDtype::I64 => 8,
            WeightDtype::F32 => 4,
            WeightDtype::F16 | WeightDtype::BF16 => 2,
            WeightDtype::U8 | WeightDtype::I8 => 1,
        }
    }

    /// The name safetensors uses.
    pub const fn safetensors_name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "F32",
            WeightDtype::F16 => "F16",
            WeightDtype::BF16 => "BF16",
            WeightDtype::U8 => "U8",
            WeightDtype::I64 => "I64",
            WeightDtype::I8 => "I8",
        }
    }
}

/// One tensor of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    /// Name in the checkpoint.
    pub name: String,
    /// Stored element type.
    pub dtype: WeightDtype,
    /// Shape.
    pub shape: Vec<u64>,
}

impl TensorSpec {
    /// Name, element type and shape, for a session.
    pub fn info(&self) -> vortex_runtime::TensorInfo<'_> {
        vortex_runtime::TensorInfo {
            name: &self.name,
            dtype: self.dtype.into(),
            shape: &self.shape,
        }
    }

    /// Elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Bytes stored.
    pub fn bytes(&self) -> u64 {
        self.numel() * self.dtype.size()
    }
}

/// Every tensor of one checkpoint, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// What checkpoint this is.
    pub checkpoint: &'static str,
    /// The tensors.
    pub tensors: Vec<TensorSpec>,
}

impl Layout {
    /// An empty layout for `checkpoint`.
    pub fn new(checkpoint: &'static str) -> Self {
        Layout {
            checkpoint,
            tensors: Vec::new(),
        }
    }

    /// Adds a tensor.
    pub fn push(&mut self, name: impl Into<String>, dtype: WeightDtype, shape: &[u64]) {
        self.tensors.push(TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        });
    }

    /// Adds `{prefix}.weight [out, in]` and `{prefix}.bias [out]`.
    pub fn linear(&mut self, prefix: &str, dtype: WeightDtype, out: u64, inp: u64) {
        self.push(format!("{prefix}.weight"), dtype, &[out, inp]);
        self.push(format!("{prefix}.bias"), dtype, &[out]);
    }

    /// Adds `{prefix}.weight [dim]` and `{prefix}.bias [dim]`.
    pub fn layer_norm(&mut self, prefix: &str, dtype: WeightDtype, dim: u64) {
        self.push(format!("{prefix}.weight"), dtype, &[dim]);
        self.push(format!("{prefix}.bias"), dtype, &[dim]);
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Bytes of all tensors.
    pub fn bytes(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::bytes).sum()
    }

    /// Elements of all tensors.
    pub fn numel(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::numel).sum()
    }

    /// Adds every tensor of `other`, its name prefixed with `prefix`.
    pub fn extend_prefixed(&mut self, prefix: &str, other: &Layout) {
        self.tensors
            .extend(other.tensors.iter().map(|t| TensorSpec {
                name: format!("{prefix}{}", t.name),
                dtype: t.dtype,
                shape: t.shape.clone(),
            }));
    }

    /// The tensors whose names start with one of `prefixes`, and the others.
    pub fn split(&self, prefixes: &[&str]) -> (Layout, Layout) {
        let (picked, rest) = self
            .tensors
            .iter()
            .cloned()
            .partition(|t| prefixes.iter().any(|p| t.name.starts_with(p)));
        let layout = |tensors| Layout {
            checkpoint: self.checkpoint,
            tensors,
        };
        (layout(picked), layout(rest))
    }

    /// The tensors whose names start with one of `prefixes`.
    pub fn select(&self, prefixes: &[&str]) -> Layout {
        Layout {
            checkpoint: self.checkpoint,
            tensors: self
                .tensors
                .iter()
                .filter(|t| prefixes.iter().any(|p| t.name.starts_with(p)))
                .cloned()
                .collect(),
        }
    }
}
