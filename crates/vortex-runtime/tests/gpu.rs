//! The CUDA provider asked for where it cannot run: a clear error that says what to install,
//! before anything is fetched; and asked for after the process loaded ONNX Runtime's CPU
//! build, a clear error that says what to set. (On a machine with an NVIDIA driver the first
//! half is skipped: `cargo xtask gpu-check` runs the CUDA provider there.)

use vortex_runtime::gpu::{self, GpuError};
use vortex_runtime::{Runtime, RuntimeError};

#[test]
fn the_cuda_provider_without_a_driver_or_after_the_cpu_build_is_a_clear_error() {
    if gpu::load_driver().is_ok() {
        eprintln!("skipping: this machine has an NVIDIA driver (cargo xtask gpu-check covers it)");
        return;
    }
    match Runtime::get_cuda(0, Some(13000)) {
        Err(RuntimeError::Gpu(err @ GpuError::NoDriver { .. })) => {
            let text = err.to_string();
            assert!(
                text.contains("libcuda.so.1") && text.contains("install NVIDIA's driver r580"),
                "{text}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the CUDA provider started without a driver"),
    }
    // The CPU build, then the CUDA provider: one ONNX Runtime a process.
    let cpu = Runtime::get(None).expect("the CPU build loads");
    assert!(!cpu.has_cuda());
    match Runtime::get_cuda(0, Some(13000)) {
        Err(err @ RuntimeError::CpuBuildLoaded { .. }) => {
            let text = err.to_string();
            assert!(text.contains("device.backend = \"cuda\""), "{text}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the CPU build gave a CUDA provider"),
    }
}
