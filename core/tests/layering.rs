//! The core's modules form layers, and imports only point down (ARCHITECTURE.md): a
//! module names only modules listed before it in [`ORDER`], and `handshake` only the
//! leaves `time`, `wire` and `buf`. This test reads the sources, so an upward `crate::`
//! path anywhere — a `use`, a full path in code — fails it with the file and line.

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a failing check fails loudly"
)]
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom first.
const ORDER: [&str; 12] = [
    "time",
    "wire",
    "buf",
    "handshake",
    "stream",
    "ioq",
    "trans",
    "setup",
    "iocom",
    "transfer",
    "cluster",
    "drive",
];

/// What each module may name besides itself.
fn allowed(module: &str) -> Vec<&'static str> {
    if module == "handshake" {
        return vec!["time", "wire", "buf"];
    }
    let rank = ORDER
        .iter()
        .position(|m| *m == module)
        .expect("a known module");
    ORDER[..rank].to_vec()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>` named on a code line (comments are skipped: doc links may
/// point anywhere).
fn named_modules(line: &str) -> Vec<&str> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        found.push(&rest[..end]);
    }
    // `use crate::{a, b}` names several.
    if let Some(group) = code.strip_prefix("use crate::{") {
        found.extend(
            group
                .split([',', '}', ';'])
                .map(|p| p.trim().split("::").next().unwrap_or("")),
        );
    }
    found.retain(|m| ORDER.contains(m));
    found
}

fn upward_imports(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue; // the root declares and re-exports every layer
        }
        let ok = allowed(&module);
        let text = fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            for named in named_modules(line) {
                if named != module && !ok.contains(&named) {
                    bad.push(format!(
                        "{}:{}: {module} names {named}",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn imports_point_down_the_layer_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = upward_imports(&src);
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn every_module_of_the_crate_has_a_place_in_the_order() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or(l.trim().strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';'))
        .collect();
    let mut sorted_declared = declared.clone();
    sorted_declared.sort_unstable();
    let mut sorted_order = ORDER.to_vec();
    sorted_order.sort_unstable();
    assert_eq!(sorted_declared, sorted_order);
}

/// The checker sees an upward path: a fake tree where `wire` names `iocom`.
#[test]
fn the_check_catches_an_upward_import() {
    let dir = std::env::temp_dir().join(format!("h2msg-layering-{}", std::process::id()));
    fs::create_dir_all(dir.join("wire")).expect("temp dir");
    fs::write(dir.join("wire/mod.rs"), "use crate::{buf, iocom::Iocom};\n").expect("write");
    fs::write(dir.join("handshake.rs"), "fn f() { crate::stream::x(); }\n").expect("write");
    fs::write(
        dir.join("drive.rs"),
        "// crate::anything in a comment\nuse crate::iocom::X;\n",
    )
    .expect("write");
    let mut bad = upward_imports(&dir);
    bad.sort();
    fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(
        bad,
        [
            "handshake.rs:1: handshake names stream",
            "wire/mod.rs:1: wire names buf",
            "wire/mod.rs:1: wire names iocom",
        ]
    );
}
