//! `include/mapstate.h` is checked in (C users get it without building) and
//! must be exactly what cbindgen generates from `src/` now. Run with
//! `MAPSTATE_BLESS=1` to rewrite it after changing the API.

use std::fmt::Write as _;
use std::path::Path;

#[test]
fn header_is_what_cbindgen_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = parenthesize_negative_defines(&generated);
    let path = dir.join("include/mapstate.h");
    let current = std::fs::read(&path).unwrap_or_default();
    if current == generated {
        return;
    }
    if std::env::var_os("MAPSTATE_BLESS").is_some() {
        // Write beside it and rename: a concurrent reader (gcc in another
        // test) sees the old header or the new one, never half of one.
        let tmp = dir.join("include/.mapstate.h.tmp");
        std::fs::write(&tmp, &generated).expect("write the header");
        std::fs::rename(&tmp, &path).expect("rename the header into place");
        return;
    }
    let old = String::from_utf8_lossy(&current);
    let new = String::from_utf8_lossy(&generated);
    let first = old
        .lines()
        .zip(new.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| old.lines().count().min(new.lines().count()));
    panic!(
        "{} is out of date (first difference at line {}):\n  checked in: {:?}\n  generated:  {:?}\n\
         regenerate it with: MAPSTATE_BLESS=1 cargo test -p mapstate-capi --test header",
        path.display(),
        first + 1,
        old.lines().nth(first).unwrap_or("<end of file>"),
        new.lines().nth(first).unwrap_or("<end of file>"),
    );
}

/// `#define MAPSTATE_E_IO -1` would turn `x-MAPSTATE_E_IO` into `x--1`:
/// cbindgen writes negative constants bare, so they are wrapped here.
fn parenthesize_negative_defines(header: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(header.to_vec()).expect("the header is UTF-8");
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let mut words = body.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("#define"), Some(name), Some(value))
                if value.starts_with('-') && value[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                let _ = write!(out, "#define {name} ({value})");
                out.push_str(&line[body.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}
