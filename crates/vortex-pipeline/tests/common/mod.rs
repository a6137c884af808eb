//! The shared fixture of the pipeline's tests: the shipped config.toml as a TOML document,
//! edited by key path (`"buffers.image_size"`), each edit checked to name a key the file has;
//! and [`Shipped::small_slot`], the one small slot the orchestration tests start from.

#![allow(dead_code)] // each test file uses a different part of it

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Value};
use vortex_pipeline::config::Config;

/// The shipped config.toml.
pub fn shipped_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.toml")
}

/// The edits of [`Shipped::small_slot`].
const SMALL_SLOT: &[(&str, &str)] = &[
    // The reference audio: any sample rate, nothing fetched.
    ("models.kokoro.weights", "\"synthetic\""),
    // One second at 4 fps of 16² frames: 4 frames, two staged and two verified.
    ("buffers.image_size", "16"),
    ("buffers.seconds", "1"),
    ("buffers.fps", "4"),
    ("buffers.staging_frames", "2"),
    ("timing.verified_frames", "2"),
];

/// The shipped config.toml as a document, edited by key (layout and comments kept).
#[derive(Debug, Clone)]
pub struct Shipped {
    doc: DocumentMut,
}

impl Default for Shipped {
    fn default() -> Self {
        Self::new()
    }
}

impl Shipped {
    /// The file as shipped.
    pub fn new() -> Self {
        // Compiled in, so test binaries built here run anywhere (the GPU bundle).
        let text = include_str!("../../../../config.toml");
        Shipped {
            doc: text.parse().expect("the shipped config.toml is TOML"),
        }
    }

    /// The shipped file with a slot small enough for orchestration tests to run many: the
    /// reference audio, one second at 4 fps of 16² frames, two staging and two verified
    /// frames. Tests set what they need beyond it (the cost profile, a longer slot).
    pub fn small_slot() -> Self {
        Self::new().with(SMALL_SLOT)
    }

    /// Sets `path` (`"buffers.image_size"`, `"models.flux.budget"`) to `value`, a TOML value
    /// as written (`16`, `"\"15s\""`). Panics unless the file has that key and `value` is a
    /// TOML value.
    pub fn set(mut self, path: &str, value: &str) -> Self {
        let mut new: Value = value
            .parse()
            .unwrap_or_else(|e| panic!("`{path}`: {value:?} is not a TOML value: {e}"));
        let mut item: &mut Item = self.doc.as_item_mut();
        for key in path.split('.') {
            item = item
                .get_mut(key)
                .unwrap_or_else(|| panic!("config.toml has no `{path}`"));
        }
        let old = item
            .as_value_mut()
            .unwrap_or_else(|| panic!("`{path}` is a table of config.toml, not a value"));
        *new.decor_mut() = old.decor().clone();
        *old = new;
        self
    }

    /// Sets several keys, in order (a later edit of a key wins).
    pub fn with(self, edits: &[(&str, &str)]) -> Self {
        edits
            .iter()
            .fold(self, |s, (path, value)| s.set(path, value))
    }

    /// Every key path of the file holding a value (`"device.backend"`, …), in file order.
    pub fn keys(&self) -> Vec<String> {
        fn walk(prefix: &str, table: &dyn toml_edit::TableLike, out: &mut Vec<String>) {
            for (key, item) in table.iter() {
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                match item.as_table_like() {
                    Some(inner) if !item.is_value() => walk(&path, inner, out),
                    _ => out.push(path),
                }
            }
        }
        let mut out = Vec::new();
        walk("", self.doc.as_table(), &mut out);
        out
    }

    /// The edited text.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    /// The edited text, parsed and validated (relative paths against the shipped file).
    pub fn config(&self) -> Config {
        Config::parse(&self.text(), &shipped_path()).expect("the edited config is valid")
    }

    /// Writes the edited file into `dir` and returns its path.
    pub fn write_into(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, self.text()).expect("write config.toml");
        path
    }
}
