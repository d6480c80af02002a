//! The proof that the C library installs like LMDB's: `scripts/install-c.sh
//! --prefix TMP` into a scratch prefix, then a C program built against the
//! installed copy alone with `pkg-config --cflags --libs mapstate`
//! (`PKG_CONFIG_PATH` pointing into the prefix) runs with
//! `LD_LIBRARY_PATH=TMP/lib`, finding the library by its SONAME
//! (`libmapstate.so.MAJOR`, checked with `readelf -d`); the same program
//! linked with the installed `libmapstate.a` runs too.
//!
//! Needs `pkg-config` (Debian package `pkg-config`, which `.ci/run`
//! installs): without it this test fails, saying so. Without gcc it prints
//! SKIPPED, as the other C tests do.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CFLAGS: &[&str] = &["-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror"];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd`, which must succeed; returns its stdout.
fn ok(cmd: &mut Command, what: &str) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The SONAME or the NEEDED entries of an ELF file, from `readelf -d`.
fn dynamic(file: &Path, tag: &str) -> Vec<String> {
    ok(Command::new("readelf").arg("-d").arg(file), "readelf -d")
        .lines()
        .filter(|l| l.contains(&format!("({tag})")))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_owned()))
        .collect()
}

/// The installed files, the symlinks, and the SONAME with the ABI version.
fn check_files(prefix: &Path, version: &str, soname: &str) {
    let lib = prefix.join("lib");
    let real = lib.join(format!("libmapstate.so.{version}"));
    assert!(real.is_file(), "{} is missing", real.display());
    assert_eq!(
        fs::read_link(lib.join(soname)).expect("the SONAME symlink"),
        PathBuf::from(format!("libmapstate.so.{version}"))
    );
    assert_eq!(
        fs::read_link(lib.join("libmapstate.so")).expect("the link-time symlink"),
        PathBuf::from(soname)
    );
    assert!(lib.join("libmapstate.a").is_file());
    assert!(prefix.join("include/mapstate.h").is_file());
    assert_eq!(dynamic(&real, "SONAME"), [soname]);
}

/// Compiles `tests/c/installed.c` into `exe` with `flags` (from pkg-config)
/// and nothing from the source tree but the program (and its `check.h`,
/// found by `-iquote`: `mapstate.h` is the installed one).
fn compile(exe: &Path, flags: impl Iterator<Item = OsString>) {
    ok(
        Command::new("gcc")
            .args(CFLAGS)
            .arg("-iquote")
            .arg(crate_dir().join("tests/c"))
            .arg(crate_dir().join("tests/c/installed.c"))
            .arg("-o")
            .arg(exe)
            .args(flags),
        "gcc against the installed library",
    );
}

#[test]
fn the_installed_library_builds_and_runs_a_c_program_through_pkg_config() {
    assert!(
        runs("pkg-config"),
        "pkg-config not found: this test builds against the installed library with \
         `pkg-config --cflags --libs mapstate`; install it (Debian package `pkg-config`; \
         .ci/run does)"
    );
    if !runs("gcc") {
        eprintln!(
            "SKIPPED: gcc not found; install it (Debian package `gcc`) to compile the C tests"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = tmp.path().join("prefix");
    let script = crate_dir().join("../../scripts/install-c.sh");
    print!(
        "{}",
        ok(
            Command::new(&script)
                .arg("--prefix")
                .arg(&prefix)
                .env("CARGO", env!("CARGO"))
                .env_remove("DESTDIR"),
            "scripts/install-c.sh"
        )
    );

    let version = env!("CARGO_PKG_VERSION");
    let soname = format!("libmapstate.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    let lib = prefix.join("lib");
    check_files(&prefix, version, &soname);

    // pkg-config, pointed into the prefix alone.
    let pkg_config = |args: &[&str]| {
        ok(
            Command::new("pkg-config")
                .args(args)
                .arg("mapstate")
                .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
                .env_remove("PKG_CONFIG_LIBDIR")
                .env_remove("PKG_CONFIG_SYSROOT_DIR"),
            "pkg-config",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(pkg_config(&["--modversion"]), version);
    assert_eq!(
        pkg_config(&["--variable=prefix"]),
        prefix.to_str().expect("a UTF-8 temp path")
    );
    let flags = pkg_config(&["--cflags", "--libs"]);
    assert!(
        flags.contains(&format!("-I{}", prefix.join("include").display())),
        "{flags}"
    );

    let shared = tmp.path().join("installed-shared");
    compile(&shared, flags.split_whitespace().map(OsString::from));
    assert_eq!(
        dynamic(&shared, "NEEDED")
            .iter()
            .filter(|n| n.starts_with("libmapstate"))
            .collect::<Vec<_>>(),
        [&soname]
    );

    // Static: the installed libmapstate.a with the .pc's Libs.private.
    let static_libs = pkg_config(&["--static", "--libs"]);
    let static_exe = tmp.path().join("installed-static");
    let cflags = pkg_config(&["--cflags"]);
    let libs = static_libs.split_whitespace().map(|a| {
        if a == "-lmapstate" {
            lib.join("libmapstate.a").into_os_string()
        } else {
            a.into()
        }
    });
    compile(
        &static_exe,
        cflags.split_whitespace().map(OsString::from).chain(libs),
    );
    assert!(
        !dynamic(&static_exe, "NEEDED")
            .iter()
            .any(|n| n.starts_with("libmapstate")),
        "the static program loads libmapstate"
    );

    for exe in [&shared, &static_exe] {
        let dir = tempfile::tempdir().expect("tempdir");
        let stdout = ok(
            Command::new(exe)
                .arg(dir.path())
                .env("LD_LIBRARY_PATH", &lib),
            "the program built against the installed library",
        );
        println!("{stdout}");
        assert!(
            stdout.starts_with(&format!("version {version}\n")),
            "{stdout}"
        );
        assert!(stdout.ends_with("\n0 failed\n"), "{stdout}");
    }
}
