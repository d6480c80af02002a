//! The library's house rules, checked on its source: dependencies between
//! modules point one way (down the layers below), no module imports one
//! that imports it back, and no file is much over 700 lines but the `sys`
//! files that each wrap one kernel interface.
//!
//! `cargo test -p mapstate --test layers -- --nocapture` prints the import
//! graph: each module and the modules it imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import only from a lower layer.
/// The store's pieces have layers of their own inside the store.
const LAYERS: &[&[&str]] = &[
    // `docs` is documents only (no code, no imports).
    &["sys", "error", "docs"],
    &[
        "testing",
        "filesystem",
        "format",
        "offset",
        "change",
        "signals",
        "mtime",
        "live_image",
        "backoff",
    ],
    &["fs", "options"],
    &["map"],
    &["probe"],
    &[
        "store::seqlock",
        "store::ring",
        "store::notify_word",
        "store::pages",
        "store::files",
        "store::handover",
    ],
    &[
        "store::durable",
        "store::log",
        "store::lock",
        "store::syncer",
    ],
    &["store::journal", "store::live"],
    &["store::view", "store::checkpoint"],
    &["store::recovery"],
    &["store"],
    &["writer"],
    &["txn", "reader"],
    &["shared", "notify"],
    &["lib"],
];

/// Files allowed past the size limit: each wraps one kernel interface.
const BIG_SYS_FILES: &[&str] = &["sys/uffd.rs", "sys/signals.rs"];

/// The most lines a file may have.
const MAX_LINES: usize = 710;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a source file belongs to: `store` files are modules of their
/// own; any other directory (`sys`, `map`, `notify`) is one module.
fn module_of(rel: &str) -> String {
    let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    match parts.as_slice() {
        ["lib"] => "lib".into(),
        ["store", "mod"] => "store".into(),
        ["store", m] => format!("store::{m}"),
        [top, ..] => (*top).into(),
        [] => unreachable!(),
    }
}

/// The modules a file names through `crate::` paths (in `use` items and
/// in code), comments left out; `super::` in a store file is the store.
fn imports(text: &str, module: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name == "store" {
                let sub = rest["store".len()..].strip_prefix("::").unwrap_or("");
                let sub: String = sub
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let is_module = sub.chars().next().is_some_and(char::is_lowercase);
                out.insert(if is_module {
                    format!("store::{sub}")
                } else {
                    "store".into()
                });
            } else if !name.is_empty() && name.chars().next().unwrap().is_lowercase() {
                out.insert(name);
            }
        }
        if module.starts_with("store::") && code.contains("super::") && !code.contains("mod tests")
        {
            out.insert("store".into());
        }
    }
    out.remove(module);
    out
}

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests may reach anywhere.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let m = module_of(&rel);
        let deps = imports(text, &m);
        g.entry(m).or_default().extend(deps);
    }
    g
}

#[test]
fn dependencies_point_down_the_layers() {
    let g = graph();
    println!("the library's modules and what each imports (lowest layer first):");
    let mut order: Vec<&String> = g.keys().collect();
    order.sort_by_key(|m| (layer_of(m), (*m).clone()));
    for m in order {
        let deps: Vec<&str> = g[m].iter().map(String::as_str).collect();
        println!(
            "  {m} -> {}",
            if deps.is_empty() {
                "-".into()
            } else {
                deps.join(", ")
            }
        );
    }
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        // The crate root re-exports from everything; the store's mod.rs
        // only declares its pieces.
        if m == "lib" || m == "store" {
            continue;
        }
        for d in deps {
            if layer_of(d) >= layer_of(m) {
                wrong.push(format!("{m} imports {d}, which is not in a lower layer"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    for (m, deps) in &g {
        for d in deps {
            assert!(
                !g.get(d).is_some_and(|back| back.contains(m)),
                "{m} and {d} import each other"
            );
        }
    }
}

#[test]
fn files_stay_small() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut big = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().to_str().unwrap().to_owned();
        let n = std::fs::read_to_string(&f).unwrap().lines().count();
        if n > MAX_LINES && !BIG_SYS_FILES.contains(&rel.as_str()) {
            big.push(format!("{rel}: {n} lines"));
        }
    }
    assert!(big.is_empty(), "split these files: {}", big.join(", "));
}

/// The checker itself: a path through `crate::store::` names the piece.
#[test]
fn the_checker_reads_paths_as_modules() {
    let got = imports(
        "use crate::store::live::Live;\nuse crate::store::StateFiles; // crate::nope\nlet x = crate::fs::open();",
        "writer",
    );
    let want: BTreeSet<String> = ["store::live", "store", "fs"].map(String::from).into();
    assert_eq!(got, want);
}
