//! The version of the C library: `MAPSTATE_VERSION_MAJOR`, `_MINOR` and
//! `_PATCH` in the header (and `MAPSTATE_VERSION_STRING`, made from them
//! there), `mapstate_version()` at run time. All of them are the Cargo
//! version of this crate: the constants are literals (cbindgen copies
//! literals into the header), and the build fails if they differ from it.

use std::ffi::{CStr, c_char, c_int};

/// The major version of the library this header belongs to (`X` of
/// `X.Y.Z`): also the ABI version, `libmapstate.so.X`. Compare it with
/// `mapstate_version()` to find the library the program runs with.
pub const MAPSTATE_VERSION_MAJOR: c_int = 0;
/// The minor version of the library this header belongs to (`Y` of `X.Y.Z`).
pub const MAPSTATE_VERSION_MINOR: c_int = 1;
/// The patch version of the library this header belongs to (`Z` of `X.Y.Z`).
pub const MAPSTATE_VERSION_PATCH: c_int = 0;

/// The version as Cargo has it, such as `"0.1.0"`, NUL-terminated.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the version contains a NUL byte"),
    };

/// The decimal number `s` (a part of the Cargo version).
const fn number(s: &str) -> c_int {
    let b = s.as_bytes();
    assert!(!b.is_empty(), "an empty version number");
    let mut n: c_int = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "a version number that is not decimal"
        );
        n = n * 10 + (b[i] - b'0') as c_int;
        i += 1;
    }
    n
}

const _: () = assert!(
    MAPSTATE_VERSION_MAJOR == number(env!("CARGO_PKG_VERSION_MAJOR"))
        && MAPSTATE_VERSION_MINOR == number(env!("CARGO_PKG_VERSION_MINOR"))
        && MAPSTATE_VERSION_PATCH == number(env!("CARGO_PKG_VERSION_PATCH")),
    "MAPSTATE_VERSION_* in src/version.rs differ from the Cargo version: set them to it \
     and regenerate the header (MAPSTATE_BLESS=1 cargo test -p mapstate-capi --test header)"
);

/// The version of this library, such as `"0.1.0"` (the header it was built
/// with says `MAPSTATE_VERSION_STRING`; a program may run with another).
/// A static string: never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mapstate_version() -> *const c_char {
    VERSION.as_ptr()
}
