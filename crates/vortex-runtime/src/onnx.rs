//! ONNX graphs read for placement: which of a graph's initializers ONNX Runtime's CUDA provider
//! will read on the device, which on the host, and which nodes it will leave on the CPU.
//!
//! Vortex hands each initializer to a session over memory it owns (`AddInitializer`). ONNX
//! Runtime uses a device value in place only where it plans that initializer on the device
//! (`session_state_utils.cc`, `SaveInitializedTensors`); elsewhere it logs "Cannot use user
//! supplied initializer" and loads the graph's own tensor, which for Vortex's weightless graphs
//! is the wrong data. So each initializer is classified from the graph, before a session
//! exists, by where it will be read ([`classify`], [`Placement`]).
//!
//! The graph is read with a small protobuf reader of its own (`wire`): only the fields
//! placement needs (nodes, their subgraphs, initializers' names, types and shapes, opset
//! imports); every other field is skipped, and malformed bytes give an [`OnnxError`] naming
//! the file, never a panic. The CUDA provider's kernels (which ops it has, which inputs it
//! reads on the host) are a table read from ONNX Runtime's source (`cuda`); the placement
//! rules mirror ONNX Runtime's partitioning (`placement`). What the table does not model is
//! said in `placement`'s docs; ONNX Runtime stays the authority, and a start-up that hands
//! a device value where it planned the host still fails loudly on its warning.
//!
//! Nothing here knows a model: it sees graphs, ops and names.

mod cuda;
mod placement;
mod wire;

use std::path::{Path, PathBuf};

pub use placement::{
    Classification, CpuNode, CpuReason, InitializerPlacement, NodeRef, Placement, Read, Side,
    classify,
};
pub use wire::{MAX_DEPTH, Problem};

use wire::{Field, Fields, Malformed};

/// Why a graph could not be read or classified.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX model.
    #[error("{} is not an ONNX model: {problem} (at byte {offset})", file.display())]
    NotOnnx {
        /// The file.
        file: PathBuf,
        /// Where the bytes stopped making sense.
        offset: usize,
        /// What was wrong there.
        problem: Problem,
    },
    /// The file could not be read.
    #[error("could not read {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A name handed to [`classify`] is no initializer of the graph.
    #[error(
        "{} has no initializer named {name:?}: the graph and the weights handed to it do not match (re-export the model)",
        file.display()
    )]
    NoSuchInitializer {
        /// The file.
        file: PathBuf,
        /// The name.
        name: String,
    },
}

/// An ONNX model: as much of its `ModelProto` as placement needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    file: PathBuf,
    /// The IR version.
    pub ir_version: i64,
    /// Operator sets by domain (`""` is `ai.onnx`).
    pub opset_imports: Vec<OpsetImport>,
    /// The main graph.
    pub graph: Graph,
}

/// An operator set the model imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsetImport {
    /// Its domain (`""` or `"ai.onnx"` for the default one).
    pub domain: String,
    /// Its version.
    pub version: i64,
}

/// A graph: the model's, or a subgraph (an If branch, a Loop or Scan body).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// Its name.
    pub name: String,
    /// Its nodes, in file order.
    pub nodes: Vec<Node>,
    /// Its initializers, dense and sparse (the graph's weights, whether their bytes are in
    /// the file, elsewhere ([`Tensor::external`]), or nowhere).
    pub initializers: Vec<Tensor>,
    /// Its inputs.
    pub inputs: Vec<ValueInfo>,
    /// Its outputs.
    pub outputs: Vec<ValueInfo>,
    /// Types recorded for its intermediate values (shape inference's output, if it ran).
    pub value_info: Vec<ValueInfo>,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    /// Its name (may be empty).
    pub name: String,
    /// The operator.
    pub op_type: String,
    /// The operator's domain (`""` for `ai.onnx`).
    pub domain: String,
    /// Input names by slot (`""` for an optional input left out).
    pub inputs: Vec<String>,
    /// Output names by slot.
    pub outputs: Vec<String>,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
}

/// A node's attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: AttributeValue,
}

/// An attribute's value, as far as placement reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// A float (its value is not read).
    Float,
    /// An integer.
    Int(i64),
    /// A string (bytes).
    String(Vec<u8>),
    /// A tensor (a Constant's value).
    Tensor(Tensor),
    /// A sparse tensor.
    SparseTensor(Tensor),
    /// A subgraph.
    Graph(Graph),
    /// Floats: how many.
    Floats(usize),
    /// Integers.
    Ints(Vec<i64>),
    /// Strings.
    Strings(Vec<Vec<u8>>),
    /// Subgraphs.
    Graphs(Vec<Graph>),
    /// Anything else (tensors, type protos).
    Other,
}

/// A tensor's description: an initializer, or a Constant's value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tensor {
    /// Its name.
    pub name: String,
    /// `TensorProto.DataType` (1 float, 2 uint8, 3 int8, 7 int64, 10 float16, ...).
    pub data_type: i32,
    /// Its shape (`[]` for a scalar).
    pub dims: Vec<i64>,
    /// Its bytes are outside the graph file (`data_location = EXTERNAL`): for Vortex's
    /// exports, the weights it hands to the session.
    pub external: bool,
}

impl Tensor {
    /// How many elements it holds (1 for a scalar; saturating).
    pub fn elements(&self) -> i64 {
        self.dims
            .iter()
            .fold(1i64, |n, &d| n.saturating_mul(d.max(0)))
    }
}

/// A value's name and element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    /// Its name.
    pub name: String,
    /// `TensorProto.DataType` of a tensor (or sparse tensor) value; `None` for other types.
    pub elem_type: Option<i32>,
}

/// `TensorProto.DataType` values placement looks at.
pub mod data_type {
    /// float32.
    pub const FLOAT: i32 = 1;
    /// uint8.
    pub const UINT8: i32 = 2;
    /// int8.
    pub const INT8: i32 = 3;
    /// int32.
    pub const INT32: i32 = 6;
    /// int64.
    pub const INT64: i32 = 7;
    /// string.
    pub const STRING: i32 = 8;
    /// float16.
    pub const FLOAT16: i32 = 10;
    /// bfloat16.
    pub const BFLOAT16: i32 = 16;
    /// float8 e4m3fn.
    pub const FLOAT8E4M3FN: i32 = 17;
    /// float8 e5m2fnuz (the last float8).
    pub const FLOAT8E5M2FNUZ: i32 = 20;
}

impl Model {
    /// Reads `bytes`, the contents of `file` (named in errors).
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<Model, OnnxError> {
        model(bytes, file.to_owned()).map_err(|m| OnnxError::NotOnnx {
            file: file.to_owned(),
            offset: m.offset,
            problem: m.problem,
        })
    }

    /// Reads the model at `file`.
    pub fn read(file: &Path) -> Result<Model, OnnxError> {
        let bytes = std::fs::read(file).map_err(|source| OnnxError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(file, &bytes)
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The version of `domain`'s operator set (`""` and `"ai.onnx"` are one domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let domain = canonical_domain(domain);
        self.opset_imports
            .iter()
            .rev()
            .find(|o| canonical_domain(&o.domain) == domain)
            .map(|o| o.version)
    }
}

impl Node {
    /// The attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    /// Its subgraphs, with the attribute each comes from.
    pub fn subgraphs(&self) -> impl Iterator<Item = (&str, &Graph)> {
        self.attributes.iter().flat_map(|a| {
            match &a.value {
                AttributeValue::Graph(g) => std::slice::from_ref(g),
                AttributeValue::Graphs(gs) => gs.as_slice(),
                _ => &[],
            }
            .iter()
            .map(move |g| (a.name.as_str(), g))
        })
    }
}

/// `""` for the default domain however it is spelled.
fn canonical_domain(domain: &str) -> &str {
    if domain == "ai.onnx" { "" } else { domain }
}

fn model(bytes: &[u8], file: PathBuf) -> Result<Model, Malformed> {
    let mut fields = Fields::new(bytes, 0);
    let mut ir_version = 0;
    let mut opset_imports = Vec::new();
    let mut graph_field = None;
    while let Some(f) = fields.next()? {
        match f.number {
            1 => ir_version = f.int("ModelProto.ir_version")?,
            // A message field written twice is merged by protobuf; ONNX writers never do it,
            // so the last one is read.
            7 => graph_field = Some(f),
            8 => opset_imports.push(opset_import(&f)?),
            _ => {}
        }
    }
    let Some(graph_field) = graph_field else {
        return Err(Malformed {
            offset: bytes.len(),
            problem: Problem::NoGraph,
        });
    };
    Ok(Model {
        file,
        ir_version,
        opset_imports,
        graph: graph(&graph_field, 0)?,
    })
}

fn opset_import(f: &Field<'_>) -> Result<OpsetImport, Malformed> {
    let mut fields = f.message("ModelProto.opset_import")?;
    let mut out = OpsetImport {
        domain: String::new(),
        version: 0,
    };
    while let Some(f) = fields.next()? {
        match f.number {
            1 => out.domain = f.string("OperatorSetIdProto.domain")?,
            2 => out.version = f.int("OperatorSetIdProto.version")?,
            _ => {}
        }
    }
    Ok(out)
}

fn graph(f: &Field<'_>, depth: usize) -> Result<Graph, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed {
            offset: f.offset,
            problem: Problem::TooDeep,
        });
    }
    let mut fields = f.message("GraphProto")?;
    let mut out = Graph::default();
    while let Some(f) = fields.next()? {
        match f.number {
            1 => out.nodes.push(node(&f, depth)?),
            2 => out.name = f.string("GraphProto.name")?,
            5 => out.initializers.push(tensor(&f, "GraphProto.initializer")?),
            11 => out.inputs.push(value_info(&f, "GraphProto.input")?),
            12 => out.outputs.push(value_info(&f, "GraphProto.output")?),
            13 => out
                .value_info
                .push(value_info(&f, "GraphProto.value_info")?),
            15 => out
                .initializers
                .push(sparse_tensor(&f, "GraphProto.sparse_initializer")?),
            _ => {}
        }
    }
    Ok(out)
}

fn node(f: &Field<'_>, depth: usize) -> Result<Node, Malformed> {
    let mut fields = f.message("NodeProto")?;
    let mut out = Node::default();
    while let Some(f) = fields.next()? {
        match f.number {
            1 => out.inputs.push(f.string("NodeProto.input")?),
            2 => out.outputs.push(f.string("NodeProto.output")?),
            3 => out.name = f.string("NodeProto.name")?,
            4 => out.op_type = f.string("NodeProto.op_type")?,
            5 => out.attributes.push(attribute(&f, depth)?),
            7 => out.domain = f.string("NodeProto.domain")?,
            _ => {}
        }
    }
    Ok(out)
}

fn attribute(f: &Field<'_>, depth: usize) -> Result<Attribute, Malformed> {
    let mut fields = f.message("AttributeProto")?;
    let mut name = String::new();
    let mut kind = None;
    // Every value field present, with its AttributeType number, in file order.
    let mut values: Vec<(i64, AttributeValue)> = Vec::new();
    let mut ints = Vec::new();
    let mut floats = 0;
    let mut strings = Vec::new();
    let mut graphs = Vec::new();
    while let Some(f) = fields.next()? {
        match f.number {
            1 => name = f.string("AttributeProto.name")?,
            20 => kind = Some(f.int("AttributeProto.type")?),
            2 => values.push((1, AttributeValue::Float)),
            3 => values.push((2, AttributeValue::Int(f.int("AttributeProto.i")?))),
            4 => {
                let (s, _) = f.bytes("AttributeProto.s")?;
                values.push((3, AttributeValue::String(s.to_vec())));
            }
            5 => values.push((4, AttributeValue::Tensor(tensor(&f, "AttributeProto.t")?))),
            6 => values.push((5, AttributeValue::Graph(graph(&f, depth + 1)?))),
            7 => floats += f.float_count("AttributeProto.floats")?,
            8 => f.ints("AttributeProto.ints", &mut ints)?,
            9 => strings.push(f.bytes("AttributeProto.strings")?.0.to_vec()),
            11 => graphs.push(graph(&f, depth + 1)?),
            22 => values.push((
                11,
                AttributeValue::SparseTensor(sparse_tensor(&f, "AttributeProto.sparse_tensor")?),
            )),
            _ => {}
        }
    }
    if floats > 0 {
        values.push((6, AttributeValue::Floats(floats)));
    }
    if !ints.is_empty() {
        values.push((7, AttributeValue::Ints(ints)));
    }
    if !strings.is_empty() {
        values.push((8, AttributeValue::Strings(strings)));
    }
    if !graphs.is_empty() {
        values.push((10, AttributeValue::Graphs(graphs)));
    }
    // The declared type picks the value; an empty repeated value is a valid one of its type.
    let value = match kind {
        Some(kind) => match values.into_iter().find(|(k, _)| *k == kind) {
            Some((_, v)) => v,
            None => match kind {
                6 => AttributeValue::Floats(0),
                7 => AttributeValue::Ints(Vec::new()),
                8 => AttributeValue::Strings(Vec::new()),
                10 => AttributeValue::Graphs(Vec::new()),
                _ => AttributeValue::Other,
            },
        },
        // IR versions before 2 had no type field: the value present is the value.
        None => values
            .into_iter()
            .next()
            .map_or(AttributeValue::Other, |(_, v)| v),
    };
    Ok(Attribute { name, value })
}

fn tensor(f: &Field<'_>, what: &'static str) -> Result<Tensor, Malformed> {
    let mut fields = f.message(what)?;
    let mut out = Tensor::default();
    while let Some(f) = fields.next()? {
        match f.number {
            1 => f.ints("TensorProto.dims", &mut out.dims)?,
            2 => out.data_type = f.int("TensorProto.data_type")? as i32,
            8 => out.name = f.string("TensorProto.name")?,
            14 => out.external = f.int("TensorProto.data_location")? == 1,
            _ => {}
        }
    }
    Ok(out)
}

/// A `SparseTensorProto`: named by its values tensor, shaped by its own dims.
fn sparse_tensor(f: &Field<'_>, what: &'static str) -> Result<Tensor, Malformed> {
    let mut fields = f.message(what)?;
    let mut out = Tensor::default();
    let mut dims = Vec::new();
    while let Some(f) = fields.next()? {
        match f.number {
            1 => out = tensor(&f, "SparseTensorProto.values")?,
            3 => f.ints("SparseTensorProto.dims", &mut dims)?,
            _ => {}
        }
    }
    out.dims = dims;
    Ok(out)
}

fn value_info(f: &Field<'_>, what: &'static str) -> Result<ValueInfo, Malformed> {
    let mut fields = f.message(what)?;
    let mut out = ValueInfo {
        name: String::new(),
        elem_type: None,
    };
    while let Some(f) = fields.next()? {
        match f.number {
            1 => out.name = f.string("ValueInfoProto.name")?,
            2 => out.elem_type = type_proto(&f)?,
            _ => {}
        }
    }
    Ok(out)
}

/// A `TypeProto`'s element type, for a tensor or sparse tensor (sequences, maps and optionals
/// are not followed: no recursion, so no depth to bound).
fn type_proto(f: &Field<'_>) -> Result<Option<i32>, Malformed> {
    let mut fields = f.message("TypeProto")?;
    let mut out = None;
    while let Some(f) = fields.next()? {
        if f.number == 1 || f.number == 8 {
            let mut tensor = f.message("TypeProto.Tensor")?;
            while let Some(f) = tensor.next()? {
                if f.number == 1 {
                    out = Some(f.int("TypeProto.Tensor.elem_type")? as i32);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
