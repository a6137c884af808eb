//! The shared fixture of the pipeline's tests: the shipped config.toml with edits made by key
//! (`"buffers.image_size"`), each checked to have matched exactly one line of the file.

#![allow(dead_code)] // each test file uses a different part of it

use std::path::{Path, PathBuf};

use vortex_pipeline::config::Config;

/// The shipped config.toml.
pub fn shipped_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.toml")
}

/// The shipped config.toml's text, edited by key.
#[derive(Debug, Clone)]
pub struct Shipped {
    text: String,
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
        Shipped {
            text: include_str!("../../../../config.toml").to_owned(),
        }
    }

    /// Sets `table.key` (`"buffers.image_size"`, `"models.flux.budget"`) to `value`, a TOML
    /// value as written (`16`, `"\"15s\""`). Panics unless the key is in the file exactly once.
    pub fn set(mut self, path: &str, value: &str) -> Self {
        let (table, key) = path.rsplit_once('.').expect("a key path is table.key");
        let mut in_table = false;
        let mut hits = 0;
        let lines: Vec<String> = self
            .text
            .lines()
            .map(|line| {
                let trimmed = line.trim();
                if trimmed.starts_with('[') {
                    in_table = trimmed == format!("[{table}]");
                    return line.to_owned();
                }
                let name = trimmed.split('=').next().unwrap_or("").trim();
                if in_table && !trimmed.starts_with('#') && name == key {
                    hits += 1;
                    return format!("{key} = {value}");
                }
                line.to_owned()
            })
            .collect();
        assert_eq!(
            hits, 1,
            "config.toml has {hits} lines for `{path}`, expected one"
        );
        self.text = lines.join("\n");
        self
    }

    /// Sets several keys.
    pub fn with(self, edits: &[(&str, &str)]) -> Self {
        edits
            .iter()
            .fold(self, |s, (path, value)| s.set(path, value))
    }

    /// The edited text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The edited text, parsed and validated (relative paths against the shipped file).
    pub fn config(&self) -> Config {
        Config::parse(&self.text, &shipped_path()).expect("the edited config is valid")
    }

    /// Writes the edited file into `dir` and returns its path.
    pub fn write_into(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, &self.text).expect("write config.toml");
        path
    }
}
