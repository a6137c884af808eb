//! A library that is not ONNX Runtime: a clear error, in a process of its own (the runtime is
//! started once per process; a failure is not remembered, so a fixed path works next time).

use vortex_runtime::{Runtime, RuntimeError};

#[test]
fn a_library_that_is_not_onnx_runtime_is_a_clear_error_each_time() {
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file());
    let Some(libm) = libm else {
        eprintln!("skipped: no libm.so.6 found to stand in for a wrong library");
        return;
    };
    let err = Runtime::get(Some(std::path::Path::new(libm))).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RuntimeError::Load { .. }), "{message}");
    assert!(
        message.contains("could not load ONNX Runtime") && message.contains("1.31"),
        "{message}"
    );
    // Not remembered: the next call tries again (and fails the same way with the same path).
    let again = Runtime::get(Some(std::path::Path::new(libm))).unwrap_err();
    assert!(matches!(again, RuntimeError::Load { .. }), "{again}");
}
