//! Where the CUDA provider reads each initializer, following ONNX Runtime's partitioning:
//!
//! 1. A node goes to the CUDA provider when a kernel matches it (op, domain, opset version,
//!    and the few type constraints `cuda` models) and `GetCapability`'s checks pass; else it
//!    falls back to the CPU (`cuda_execution_provider.cc`, `GetCapability`).
//! 2. Of those, the nodes that only compute on host tensors (a shape from `Shape`, small
//!    initializers, graph inputs) are preferred on the CPU (`fallback_cpu_capability.cc`,
//!    `GetCpuPreferredNodes`; "small" is at most 100 elements; a float16/bfloat16/float8
//!    input keeps a node on the device).
//! 3. An initializer read by a CUDA kernel's host input, or by a node on the CPU, is planned
//!    in host memory; one read by both kinds is duplicated, the original name staying on
//!    the host and the device side reading a copy under a generated name
//!    (`transformer_memcpy.cc`, `ProcessInitializers`).
//!
//! Subgraphs are partitioned like graphs; a name a subgraph does not define is its
//! enclosing graph's. Constant nodes are initializers, as ONNX Runtime makes them.
//!
//! Not modelled (ONNX Runtime stays the authority; Vortex's start-up refuses its "Cannot
//! use user supplied initializer" warning): graph optimizations that rewrite nodes before
//! partitioning (fusions, constant folding, layout changes); type constraints beyond
//! `cuda::unsupported_type` (element types are known only from initializers, Constants,
//! declared inputs, outputs and `value_info`, and a few ops' outputs); model-local functions;
//! where a value read on both sides across a subgraph boundary is planned (it is reported as
//! [`Placement::Both`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use super::{AttributeValue, Graph, Model, Node, OnnxError, cuda, data_type};

/// Where ONNX Runtime's CUDA provider will read an initializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    /// Only by device-side inputs of nodes on the CUDA provider: hand it in device memory.
    Device,
    /// Only on the host (a kernel's host-side input, or a node on the CPU): hand it in host
    /// memory.
    Host,
    /// By both: ONNX Runtime keeps the name on the host and reads a copy of the graph's own
    /// tensor on the device, so a value handed in is read on one side only. Refuse the graph,
    /// or re-export it with the two reads split.
    Both,
    /// By no node (ONNX Runtime drops it).
    Unread,
}

/// A node, located.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRef {
    /// The graph it is in: `"main"`, or a subgraph's path (`main/If_3.then_branch`).
    pub graph: String,
    /// Its index in that graph's nodes.
    pub index: usize,
    /// Its name (may be empty).
    pub name: String,
    /// Its domain (`""` for `ai.onnx`).
    pub domain: String,
    /// Its operator.
    pub op_type: String,
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.domain.is_empty() {
            self.op_type.clone()
        } else {
            format!("{}.{}", self.domain, self.op_type)
        };
        if self.name.is_empty() {
            write!(f, "{op} #{} in {}", self.index, self.graph)
        } else {
            write!(f, "{op} {:?} in {}", self.name, self.graph)
        }
    }
}

/// Why a node runs on the CPU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuReason {
    /// The CUDA provider has no kernel for the op at this opset version.
    NoCudaKernel,
    /// It has one, but not for this input's element type (`TensorProto.DataType`).
    UnsupportedType {
        /// The input slot.
        input: usize,
        /// Its element type.
        elem_type: i32,
    },
    /// `GetCapability` refuses the node's attributes.
    UnsupportedAttributes(&'static str),
    /// It computes on host tensors only (a shape): ONNX Runtime prefers the CPU for it.
    ShapeComputation,
}

impl CpuReason {
    /// A fallback proper: the node cannot run on the CUDA provider (not a shape computation
    /// ONNX Runtime moves to the CPU on purpose).
    pub fn is_fallback(&self) -> bool {
        !matches!(self, CpuReason::ShapeComputation)
    }
}

/// A node on the CPU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuNode {
    /// The node.
    pub node: NodeRef,
    /// Why.
    pub reason: CpuReason,
}

/// Which side reads an input.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// A device-side input of a CUDA kernel.
    Device,
    /// A host-side input of a CUDA kernel (a shape, axes, a scalar).
    HostInput,
    /// A node on the CPU.
    CpuNode(CpuReason),
}

/// One read of an initializer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Read {
    /// The reading node.
    pub node: NodeRef,
    /// The input slot.
    pub input: usize,
    /// The side.
    pub side: Side,
}

/// One initializer's placement and the reads it follows from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitializerPlacement {
    /// The initializer.
    pub name: String,
    /// Where it is read.
    pub placement: Placement,
    /// Every read, in graph order.
    pub reads: Vec<Read>,
}

/// A graph's initializers by placement, and the nodes the CUDA provider leaves on the CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The named initializers, in the order they were named.
    pub initializers: Vec<InitializerPlacement>,
    /// Every node that runs on the CPU, fallbacks and shape computations, in graph order.
    pub cpu_nodes: Vec<CpuNode>,
}

impl Classification {
    /// The placement of `name`, if it was named.
    pub fn placement(&self, name: &str) -> Option<Placement> {
        self.initializers
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.placement)
    }

    /// The named initializers placed `placement`.
    pub fn with(&self, placement: Placement) -> impl Iterator<Item = &str> {
        self.initializers
            .iter()
            .filter(move |i| i.placement == placement)
            .map(|i| i.name.as_str())
    }

    /// The nodes that fall back to the CPU for want of a kernel (not the shape computations
    /// ONNX Runtime prefers there). Note that `session.disable_cpu_ep_fallback = 1` refuses a
    /// session with any node on the CPU provider, shape computations included
    /// (`inference_session.cc`): that refusal names all of [`Classification::cpu_nodes`]
    /// that survive ONNX Runtime's graph optimizations (constant folding removes a shape
    /// computation over static shapes; this graph is read before it).
    pub fn fallbacks(&self) -> impl Iterator<Item = &CpuNode> {
        self.cpu_nodes.iter().filter(|n| n.reason.is_fallback())
    }
}

/// Classifies the initializers `names` of the model in `graph_bytes` (read from `file`, named
/// in errors) by where ONNX Runtime's CUDA provider will read them.
pub fn classify(
    file: &Path,
    graph_bytes: &[u8],
    names: &[&str],
) -> Result<Classification, OnnxError> {
    Model::parse(file, graph_bytes)?.classify(names)
}

impl Model {
    /// Classifies the initializers `names` by where ONNX Runtime's CUDA provider will read
    /// them; every name must be an initializer of the graph or of a subgraph.
    pub fn classify(&self, names: &[&str]) -> Result<Classification, OnnxError> {
        let wanted: HashSet<&str> = names.iter().copied().collect();
        let mut found = HashSet::new();
        collect_initializer_names(&self.graph, &mut found);
        if let Some(missing) = names.iter().find(|n| !found.contains(**n)) {
            return Err(OnnxError::NoSuchInitializer {
                file: self.file().to_owned(),
                name: (*missing).to_owned(),
            });
        }
        let mut out = Collector {
            wanted,
            reads: BTreeMap::new(),
            cpu_nodes: Vec::new(),
        };
        place_graph(self, &self.graph, None, "main".to_owned(), &mut out);
        let initializers = names
            .iter()
            .map(|&name| {
                let reads = out.reads.remove(name).unwrap_or_default();
                let device = reads.iter().any(|r| r.side == Side::Device);
                let host = reads.iter().any(|r| r.side != Side::Device);
                let placement = match (device, host) {
                    (true, true) => Placement::Both,
                    (true, false) => Placement::Device,
                    (false, true) => Placement::Host,
                    (false, false) => Placement::Unread,
                };
                InitializerPlacement {
                    name: name.to_owned(),
                    placement,
                    reads,
                }
            })
            .collect();
        Ok(Classification {
            initializers,
            cpu_nodes: out.cpu_nodes,
        })
    }
}

fn collect_initializer_names<'g>(graph: &'g Graph, out: &mut HashSet<&'g str>) {
    out.extend(graph.initializers.iter().map(|t| t.name.as_str()));
    for node in &graph.nodes {
        for (_, g) in node.subgraphs() {
            collect_initializer_names(g, out);
        }
    }
}

struct Collector<'n> {
    wanted: HashSet<&'n str>,
    reads: BTreeMap<String, Vec<Read>>,
    cpu_nodes: Vec<CpuNode>,
}

/// What a name means in a graph.
#[derive(Clone, Copy)]
enum Def {
    /// An initializer from the file (one that can be named).
    Initializer { elements: i64 },
    /// A Constant node's output (an initializer to ONNX Runtime, never named).
    Constant { elements: i64 },
    /// A node output or a graph input.
    Value,
}

/// A graph's names, chained to its enclosing graph's.
struct Scope<'a> {
    parent: Option<&'a Scope<'a>>,
    defs: HashMap<&'a str, Def>,
    types: HashMap<&'a str, i32>,
}

impl Scope<'_> {
    fn def(&self, name: &str) -> Option<Def> {
        match self.defs.get(name) {
            Some(d) => Some(*d),
            None => self.parent.and_then(|p| p.def(name)),
        }
    }

    fn elem_type(&self, name: &str) -> Option<i32> {
        match self.types.get(name) {
            Some(t) => Some(*t),
            None => self.parent.and_then(|p| p.elem_type(name)),
        }
    }

    /// `IsSmallInitializer`: an initializer (this graph's or an enclosing one's) of at most
    /// 100 elements.
    fn small_initializer(&self, name: &str) -> bool {
        matches!(
            self.def(name),
            Some(Def::Initializer { elements } | Def::Constant { elements }) if elements <= 100
        )
    }
}

fn is_constant(node: &Node) -> bool {
    node.domain.is_empty() && node.op_type == "Constant"
}

/// A Constant's element type and element count, from its value attribute.
fn constant_value(node: &Node) -> (Option<i32>, i64) {
    let Some(attr) = node.attributes.first() else {
        return (None, 1);
    };
    match (attr.name.as_str(), &attr.value) {
        ("value" | "sparse_value", AttributeValue::Tensor(t) | AttributeValue::SparseTensor(t)) => {
            (Some(t.data_type), t.elements())
        }
        ("value_int", _) => (Some(data_type::INT64), 1),
        ("value_ints", AttributeValue::Ints(v)) => (Some(data_type::INT64), v.len() as i64),
        ("value_float", _) => (Some(data_type::FLOAT), 1),
        ("value_floats", AttributeValue::Floats(n)) => (Some(data_type::FLOAT), *n as i64),
        ("value_string", _) => (Some(data_type::STRING), 1),
        ("value_strings", AttributeValue::Strings(v)) => (Some(data_type::STRING), v.len() as i64),
        _ => (None, 1),
    }
}

/// Where one node runs.
#[derive(Clone)]
enum Where {
    Cuda(&'static cuda::Kernel),
    Cpu(CpuReason),
}

fn place_graph<'a>(
    model: &Model,
    graph: &'a Graph,
    parent: Option<&'a Scope<'a>>,
    path: String,
    out: &mut Collector<'_>,
) {
    let scope = scope(graph, parent);
    let order = topological_order(graph);

    // 1. Kernels and `GetCapability`'s refusals.
    let mut placed: Vec<Option<Where>> = graph
        .nodes
        .iter()
        .map(|node| {
            if is_constant(node) {
                return None;
            }
            let domain = super::canonical_domain(&node.domain);
            let kernel = model
                .opset(domain)
                .and_then(|v| cuda::kernel(domain, &node.op_type, v));
            let Some(kernel) = kernel else {
                return Some(Where::Cpu(CpuReason::NoCudaKernel));
            };
            if let Some((input, elem_type)) = cuda::unsupported_type(node, |n| scope.elem_type(n)) {
                return Some(Where::Cpu(CpuReason::UnsupportedType { input, elem_type }));
            }
            if let Some(why) = cuda::unsupported_attributes(node) {
                return Some(Where::Cpu(CpuReason::UnsupportedAttributes(why)));
            }
            Some(Where::Cuda(kernel))
        })
        .collect();

    // 2. `GetCpuPreferredNodes`.
    for i in cpu_preferred(graph, &scope, &order, &placed) {
        placed[i] = Some(Where::Cpu(CpuReason::ShapeComputation));
    }

    // 3. The reads.
    for (index, node) in graph.nodes.iter().enumerate() {
        let Some(place) = &placed[index] else {
            continue;
        };
        let node_ref = || NodeRef {
            graph: path.clone(),
            index,
            name: node.name.clone(),
            domain: node.domain.clone(),
            op_type: node.op_type.clone(),
        };
        if let Where::Cpu(reason) = place {
            out.cpu_nodes.push(CpuNode {
                node: node_ref(),
                reason: reason.clone(),
            });
        }
        for (slot, input) in node.inputs.iter().enumerate() {
            if input.is_empty() || !out.wanted.contains(input.as_str()) {
                continue;
            }
            if !matches!(scope.def(input), Some(Def::Initializer { .. })) {
                continue;
            }
            let side = match place {
                Where::Cuda(k) if k.cpu_inputs.contains(&slot) => Side::HostInput,
                Where::Cuda(_) => Side::Device,
                Where::Cpu(reason) => Side::CpuNode(reason.clone()),
            };
            out.reads.entry(input.clone()).or_default().push(Read {
                node: node_ref(),
                input: slot,
                side,
            });
        }
    }

    // 4. Subgraphs, each partitioned on its own.
    for (index, node) in graph.nodes.iter().enumerate() {
        for (attr, sub) in node.subgraphs() {
            let label = if node.name.is_empty() {
                format!("{}#{index}", node.op_type)
            } else {
                node.name.clone()
            };
            place_graph(
                model,
                sub,
                Some(&scope),
                format!("{path}/{label}.{attr}"),
                out,
            );
        }
    }
}

fn scope<'a>(graph: &'a Graph, parent: Option<&'a Scope<'a>>) -> Scope<'a> {
    let mut defs = HashMap::new();
    let mut types = HashMap::new();
    for v in graph.inputs.iter() {
        defs.insert(v.name.as_str(), Def::Value);
    }
    for v in graph
        .inputs
        .iter()
        .chain(&graph.outputs)
        .chain(&graph.value_info)
    {
        if let Some(t) = v.elem_type {
            types.insert(v.name.as_str(), t);
        }
    }
    for t in &graph.initializers {
        defs.insert(
            t.name.as_str(),
            Def::Initializer {
                elements: t.elements(),
            },
        );
        types.insert(t.name.as_str(), t.data_type);
    }
    for node in &graph.nodes {
        if is_constant(node) {
            let (elem_type, elements) = constant_value(node);
            for o in &node.outputs {
                defs.insert(o.as_str(), Def::Constant { elements });
                if let Some(t) = elem_type {
                    types.insert(o.as_str(), t);
                }
            }
            continue;
        }
        for o in node.outputs.iter().filter(|o| !o.is_empty()) {
            defs.insert(o.as_str(), Def::Value);
        }
        // The few output types placement needs that `value_info` may not record.
        let fixed: &[Option<i32>] = match (node.domain.as_str(), node.op_type.as_str()) {
            ("", "Shape" | "Size") => &[Some(data_type::INT64)],
            ("", "DynamicQuantizeLinear") => &[
                Some(data_type::UINT8),
                Some(data_type::FLOAT),
                Some(data_type::UINT8),
            ],
            ("", "MatMulInteger" | "ConvInteger") => &[Some(data_type::INT32)],
            _ => &[],
        };
        let cast = match (node.op_type.as_str(), node.attribute("to")) {
            ("Cast", Some(AttributeValue::Int(to))) if node.domain.is_empty() => {
                i32::try_from(*to).ok()
            }
            _ => None,
        };
        for (k, o) in node.outputs.iter().enumerate() {
            let t = cast.or_else(|| fixed.get(k).copied().flatten());
            if let Some(t) = t {
                types.entry(o.as_str()).or_insert(t);
            }
        }
    }
    Scope {
        parent,
        defs,
        types,
    }
}

/// Names a node reads: its inputs, and what its subgraphs read from outside themselves.
fn reads_of(node: &Node) -> BTreeSet<&str> {
    let mut out: BTreeSet<&str> = node
        .inputs
        .iter()
        .filter(|n| !n.is_empty())
        .map(String::as_str)
        .collect();
    for (_, g) in node.subgraphs() {
        outer_reads(g, &mut out);
    }
    out
}

fn outer_reads<'g>(graph: &'g Graph, out: &mut BTreeSet<&'g str>) {
    let mut local: HashSet<&str> = graph.inputs.iter().map(|v| v.name.as_str()).collect();
    local.extend(graph.initializers.iter().map(|t| t.name.as_str()));
    for node in &graph.nodes {
        local.extend(node.outputs.iter().map(String::as_str));
    }
    for node in &graph.nodes {
        for name in reads_of(node) {
            if !local.contains(name) {
                out.insert(name);
            }
        }
    }
}

/// The nodes in an order where every producer precedes its consumers (file order among
/// equals; file order for what a cycle leaves, which ONNX Runtime would refuse anyway).
fn topological_order(graph: &Graph) -> Vec<usize> {
    let producer: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.outputs
                .iter()
                .filter(|o| !o.is_empty())
                .map(move |o| (o.as_str(), i))
        })
        .collect();
    let n = graph.nodes.len();
    let mut pending = vec![0usize; n];
    let mut consumers = vec![Vec::new(); n];
    for (i, node) in graph.nodes.iter().enumerate() {
        let deps: BTreeSet<usize> = reads_of(node)
            .into_iter()
            .filter_map(|name| producer.get(name).copied())
            .filter(|&p| p != i)
            .collect();
        pending[i] = deps.len();
        for p in deps {
            consumers[p].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if order.len() < n {
        let seen: HashSet<usize> = order.iter().copied().collect();
        order.extend((0..n).filter(|i| !seen.contains(i)));
    }
    order
}

/// `GetCpuPreferredNodes` (`fallback_cpu_capability.cc`): starting from the consumers of
/// CUDA kernels' host outputs (`Shape`, `Size`), a node with a CUDA kernel moves to the CPU
/// when every input is a host tensor, a small initializer or a graph input, none is a
/// float16-like type, and none is a host tensor its kernel reads on the host anyway; nodes
/// without a kernel pass host-ness on. Decided in topological order, so a node sees its
/// producers' outcome.
fn cpu_preferred(
    graph: &Graph,
    scope: &Scope<'_>,
    order: &[usize],
    placed: &[Option<Where>],
) -> Vec<usize> {
    let position: HashMap<usize, usize> = order.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for name in reads_of(node) {
            consumers.entry(name).or_default().push(i);
        }
    }
    let graph_inputs: HashSet<&str> = graph
        .inputs
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| !matches!(scope.defs.get(n), Some(Def::Initializer { .. })))
        .collect();
    let mut host: HashSet<&str> = HashSet::new();
    // Candidates by topological position.
    let mut queue: BTreeSet<usize> = BTreeSet::new();
    let push = |queue: &mut BTreeSet<usize>, name: &str| {
        for c in consumers.get(name).into_iter().flatten() {
            queue.insert(position[c]);
        }
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        if let Some(Where::Cuda(k)) = &placed[i] {
            for &slot in k.cpu_outputs {
                if let Some(o) = node.outputs.get(slot).filter(|o| !o.is_empty()) {
                    host.insert(o.as_str());
                    push(&mut queue, o);
                }
            }
        }
    }
    let mut visited = HashSet::new();
    let mut out = Vec::new();
    while let Some(p) = queue.pop_first() {
        let i = order[p];
        if !visited.insert(i) {
            continue;
        }
        let node = &graph.nodes[i];
        let kernel = match &placed[i] {
            Some(Where::Cuda(k)) => k,
            // Constants are initializers, not nodes.
            None => continue,
            // A node without a CUDA kernel is taken to run on the CPU: its outputs are host
            // tensors.
            Some(Where::Cpu(_)) => {
                for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                    host.insert(o.as_str());
                    push(&mut queue, o);
                }
                continue;
            }
        };
        let on_host = node.inputs.iter().enumerate().all(|(slot, input)| {
            let half = matches!(
                scope.elem_type(input),
                Some(data_type::FLOAT16 | data_type::BFLOAT16)
                    | Some(data_type::FLOAT8E4M3FN..=data_type::FLOAT8E5M2FNUZ)
            );
            if half {
                return false;
            }
            if scope.small_initializer(input) || graph_inputs.contains(input.as_str()) {
                return true;
            }
            // An omitted optional input ("") is no host tensor either.
            host.contains(input.as_str()) && !kernel.cpu_inputs.contains(&slot)
        });
        if on_host {
            out.push(i);
            for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                host.insert(o.as_str());
                push(&mut queue, o);
            }
        }
    }
    out
}
