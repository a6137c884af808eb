//! A library that is not ONNX Runtime: a clear error, in a process of its own (the runtime is
//! started once per process and remembers how it failed).

use vortex_models::runtime::{Runtime, RuntimeError};

#[test]
fn a_library_that_is_not_onnx_runtime_is_a_clear_error_and_is_remembered() {
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
    let again = Runtime::get(None).unwrap_err().to_string();
    assert!(again.contains("did not start earlier"), "{again}");
}
