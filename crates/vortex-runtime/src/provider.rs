//! Where a graph computes: ONNX Runtime's CPU provider, or its CUDA provider inside Vortex's
//! device memory, with the options Vortex runs it with.
//!
//! The CUDA options are Vortex's, not ONNX Runtime's defaults: heuristic convolution search
//! (the exhaustive default tries every algorithm with workspaces of its own at start-up), no
//! maximum workspace (cuDNN's workspaces are outside every allocator), no TF32 (the goldens
//! are checked at fp32/fp16 precision), no NHWC (Vortex's exports are NCHW), the provider's own
//! arena capped (its activations come from Vortex's scratch through the environment's
//! allocator; the cap bounds what could still reach it), and the work queued on the stage's
//! own stream. `gpu_external_alloc` is never set: `UpdateCUDAProviderOptions` drops it on this
//! path and it cannot be combined with a user stream.

use ort::ep::{self, ArbitrarilyConfigurableExecutionProvider};

/// Where a graph's nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's CPU provider (weights and activations in host-addressable memory).
    Cpu,
    /// ONNX Runtime's CUDA provider on Vortex's device memory.
    Cuda(CudaOptions),
}

impl Provider {
    /// Its name as ONNX Runtime and the plan write it.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Cpu => "CPU",
            Provider::Cuda(_) => "CUDA",
        }
    }
}

/// How a CUDA session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaOptions {
    /// The device's ordinal.
    pub device: u32,
    /// The stage's CUDA stream (`CUstream`, as an address) the session queues its work on;
    /// `None` leaves ONNX Runtime its own (only for checks that run no stage).
    pub stream: Option<usize>,
    /// The same stream as Vortex's backend names it: what a bound run (which skips ONNX
    /// Runtime's synchronization) waits on before its outputs are read.
    pub stream_id: Option<vortex_vram::StreamId>,
    /// Bytes the provider's own arena may hold (whatever the environment's allocator does
    /// not serve); the plan counts them.
    pub arena_limit: u64,
    /// Capture the graph's kernels once and replay them (fixed shapes only).
    pub cuda_graph: bool,
}

impl CudaOptions {
    /// The provider's own arena, capped when nothing else is said: 64 MiB.
    pub const DEFAULT_ARENA_LIMIT: u64 = 64 << 20;

    /// Device `device`, no stream of Vortex's, the default arena cap, no CUDA graphs.
    pub fn on(device: u32) -> Self {
        CudaOptions {
            device,
            stream: None,
            stream_id: None,
            arena_limit: Self::DEFAULT_ARENA_LIMIT,
            cuda_graph: false,
        }
    }

    /// The provider options as the key/value pairs handed to `UpdateCUDAProviderOptions`,
    /// in order: exactly what ONNX Runtime is told.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
        let mut pairs = vec![
            ("device_id", self.device.to_string()),
            ("gpu_mem_limit", self.arena_limit.to_string()),
            ("arena_extend_strategy", "kSameAsRequested".to_owned()),
            ("cudnn_conv_algo_search", "HEURISTIC".to_owned()),
            ("cudnn_conv_use_max_workspace", flag(false)),
            ("use_tf32", flag(false)),
            ("prefer_nhwc", flag(false)),
            ("enable_cuda_graph", flag(self.cuda_graph)),
        ];
        if let Some(stream) = self.stream {
            pairs.push(("has_user_compute_stream", flag(true)));
            pairs.push(("user_compute_stream", stream.to_string()));
        }
        pairs
    }

    /// ONNX Runtime's CUDA provider with these options; a registration that fails is an
    /// error, never a silent fall-back to the CPU.
    pub(crate) fn dispatch(&self) -> ep::ExecutionProviderDispatch {
        let mut cuda = ep::CUDA::default();
        for (key, value) in self.pairs() {
            cuda = cuda.with_arbitrary_config(key, value);
        }
        cuda.build().error_on_failure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(pairs: &'a [(&str, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_options_are_vortexs_and_never_the_external_allocator() {
        let options = CudaOptions {
            device: 1,
            stream: Some(0x7f00_dead_b000),
            stream_id: None,
            arena_limit: 32 << 20,
            cuda_graph: true,
        };
        let pairs = options.pairs();
        assert_eq!(value(&pairs, "device_id"), Some("1"));
        assert_eq!(value(&pairs, "gpu_mem_limit"), Some("33554432"));
        assert_eq!(value(&pairs, "cudnn_conv_algo_search"), Some("HEURISTIC"));
        assert_eq!(value(&pairs, "cudnn_conv_use_max_workspace"), Some("0"));
        assert_eq!(value(&pairs, "use_tf32"), Some("0"));
        assert_eq!(value(&pairs, "prefer_nhwc"), Some("0"));
        assert_eq!(value(&pairs, "enable_cuda_graph"), Some("1"));
        assert_eq!(value(&pairs, "has_user_compute_stream"), Some("1"));
        assert_eq!(
            value(&pairs, "user_compute_stream"),
            Some(&*(0x7f00_dead_b000usize).to_string())
        );
        assert!(
            pairs.iter().all(|(k, _)| !k.starts_with("gpu_external")),
            "gpu_external_alloc is dropped on this path and refused with a user stream"
        );
        let keys: std::collections::BTreeSet<_> = pairs.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.len(), pairs.len(), "each key once");
    }

    #[test]
    fn without_a_stream_the_session_is_not_told_of_one() {
        let pairs = CudaOptions::on(0).pairs();
        assert_eq!(value(&pairs, "has_user_compute_stream"), None);
        assert_eq!(value(&pairs, "user_compute_stream"), None);
        assert_eq!(value(&pairs, "enable_cuda_graph"), Some("0"));
        assert_eq!(
            value(&pairs, "gpu_mem_limit"),
            Some(&*CudaOptions::DEFAULT_ARENA_LIMIT.to_string())
        );
    }
}
