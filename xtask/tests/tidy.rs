//! Docs that cannot drift (rust-analyzer's tidy tests): ARCHITECTURE.md's code map names every
//! source file of every crate (`src/`, `benches/`), and every file it names exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `.rs` files under `dir`, as paths relative to `base` with `/` separators.
fn rust_files(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            rust_files(base, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(base).expect("under base");
            out.insert(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The code map's sections: the folder a `### `crates/NAME`` or `### `xtask`` heading names,
/// and the backticked `.rs` paths in its text.
fn sections(text: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### `") {
            out.push((heading.trim_end_matches('`').to_owned(), BTreeSet::new()));
            continue;
        }
        if line.starts_with("## ") && !out.is_empty() {
            break;
        }
        let Some((_, names)) = out.last_mut() else {
            continue;
        };
        for (i, quoted) in line.split('`').enumerate() {
            if i % 2 == 1 && quoted.ends_with(".rs") && !quoted.contains(' ') {
                names.insert(quoted.to_owned());
            }
        }
    }
    out
}

#[test]
fn the_code_map_names_every_source_file_and_only_files_that_exist() {
    let root = workspace();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let sections = sections(&text);
    assert!(sections.len() >= 6, "code map sections: {sections:?}");
    let mut problems = Vec::new();
    let mut covered = BTreeSet::new();
    for (folder, names) in &sections {
        let krate = root.join(folder);
        assert!(
            krate.is_dir(),
            "the code map has a section for `{folder}`, which is gone"
        );
        covered.insert(folder.clone());
        // A name is relative to the crate when it starts with a crate folder, else to `src/`.
        let resolve = |name: &str| {
            let in_crate = ["src/", "tests/", "benches/", "examples/"]
                .iter()
                .any(|p| name.starts_with(p));
            if in_crate {
                name.to_owned()
            } else {
                format!("src/{name}")
            }
        };
        let named: BTreeSet<String> = names.iter().map(|n| resolve(n)).collect();
        for name in &named {
            if !krate.join(name).is_file() {
                problems.push(format!("`{folder}`: names {name}, which does not exist"));
            }
        }
        let mut files = BTreeSet::new();
        rust_files(&krate, &krate.join("src"), &mut files);
        rust_files(&krate, &krate.join("benches"), &mut files);
        for file in files {
            if file == "src/lib.rs" {
                continue; // every crate has one; its `//!` docs are its map
            }
            if !named.contains(&file) {
                problems.push(format!("`{folder}`: {file} is not in the code map"));
            }
        }
    }
    let mut crates = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let entry = entry.expect("entry");
        if entry.path().join("Cargo.toml").is_file() {
            crates.insert(format!("crates/{}", entry.file_name().to_string_lossy()));
        }
    }
    crates.insert("xtask".to_owned());
    for krate in crates.difference(&covered) {
        problems.push(format!("`{krate}` has no section in the code map"));
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md has drifted from the tree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_check_itself_sees_a_missing_and_a_stale_name() {
    let map = "### `crates/a`\n- `x.rs`, `tests/y.rs` and `not code`\n### `xtask`\n- `main.rs`\n## Next\n- `z.rs`";
    let found = sections(map);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, "crates/a");
    assert_eq!(
        found[0].1.iter().map(String::as_str).collect::<Vec<_>>(),
        ["tests/y.rs", "x.rs"]
    );
    assert!(
        !found.iter().any(|(_, n)| n.contains("z.rs")),
        "stops at the next ## heading"
    );
}

/// The `[dependencies]`-like tables' crate names in a Cargo.toml's text (`name = …` or
/// `name.workspace = true` lines under a table whose header ends in `dependencies`).
fn dependency_names(toml: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.trim_end_matches(']').ends_with("dependencies");
            continue;
        }
        if !in_deps || line.starts_with('#') {
            continue;
        }
        let name = line
            .split(['=', '.'])
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if !name.is_empty() {
            out.insert(name.to_owned());
        }
    }
    out
}

/// Every member crate's folder (relative to the workspace) and its Cargo.toml text.
fn members() -> Vec<(String, String)> {
    let root = workspace();
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.push(root.join("xtask"));
    dirs.sort();
    for dir in dirs {
        if let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) {
            let rel = dir.strip_prefix(&root).expect("under root");
            out.push((rel.to_string_lossy().replace('\\', "/"), text));
        }
    }
    out
}

/// The members whose Cargo.toml names `dependency`.
fn naming(members: &[(String, String)], dependency: &str) -> Vec<String> {
    members
        .iter()
        .filter(|(_, toml)| dependency_names(toml).contains(dependency))
        .map(|(dir, _)| dir.clone())
        .collect()
}

#[test]
fn only_the_hardware_edges_name_cust_and_ort() {
    let members = members();
    assert_eq!(naming(&members, "cust"), ["crates/vortex-vram"]);
    assert_eq!(naming(&members, "ort"), ["crates/vortex-runtime"]);
}

/// Library and binary sources (`src/`) of every member, as (path relative to the workspace,
/// text).
fn sources() -> Vec<(String, String)> {
    let root = workspace();
    let mut files = BTreeSet::new();
    for (dir, _) in members() {
        rust_files(&root, &root.join(&dir).join("src"), &mut files);
    }
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f)).expect("readable source");
            (f, text)
        })
        .collect()
}

/// Files whose code (not comments) has a line `matches` accepts.
fn files_where(sources: &[(String, String)], matches: impl Fn(&str) -> bool) -> Vec<String> {
    sources
        .iter()
        .filter(|(_, text)| {
            text.lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
                .any(&matches)
        })
        .map(|(f, _)| f.clone())
        .collect()
}

/// A line that uses the HTTP stack's crates.
fn uses_http_stack(line: &str) -> bool {
    ["axum::", "hyper::", "hyper_util::", "use axum", "use hyper"]
        .iter()
        .any(|p| line.contains(p))
}

/// A line that starts ffmpeg (or ffprobe) as a process.
fn spawns_ffmpeg(line: &str) -> bool {
    line.contains("Command::new(") && line.to_ascii_lowercase().contains("ffmpeg")
}

#[test]
fn only_http_rs_names_the_http_stack_and_only_output_spawns_ffmpeg() {
    let sources = sources();
    assert_eq!(
        files_where(&sources, uses_http_stack),
        ["crates/vortex-pipeline/src/http.rs"]
    );
    let spawners = files_where(&sources, spawns_ffmpeg);
    assert!(!spawners.is_empty(), "something spawns ffmpeg");
    for file in spawners {
        assert!(
            file.starts_with("crates/vortex-pipeline/src/output/"),
            "{file} spawns ffmpeg; only output/ may"
        );
    }
}

#[test]
fn the_rule_checks_see_what_they_look_for() {
    let toml = "[package]\nname = \"x\"\n[dependencies]\nort.workspace = true\n# cust = 1\n[dev-dependencies]\n\"cust\" = \"0.3\"\n[features]\nort = []";
    let names = dependency_names(toml);
    assert!(names.contains("ort") && names.contains("cust"), "{names:?}");
    assert!(!names.contains("name") && !names.contains("#"), "{names:?}");
    let files = [
        ("a.rs".to_owned(), "use axum::Router;".to_owned()),
        (
            "b.rs".to_owned(),
            "// axum::Router\nlet hyperparameters = 1;".to_owned(),
        ),
        ("c.rs".to_owned(), "    Command::new(ffmpeg())".to_owned()),
    ];
    assert_eq!(files_where(&files, uses_http_stack), ["a.rs"]);
    assert_eq!(files_where(&files, spawns_ffmpeg), ["c.rs"]);
}
