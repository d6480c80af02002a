//! Gives `libmapstate.so` its SONAME, `libmapstate.so.MAJOR` (the ABI
//! version: the major version of this crate), so that programs linked with
//! it load `libmapstate.so.MAJOR` (a symlink the install script makes) and
//! a library of another major version never by mistake.

fn main() {
    let major =
        std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmapstate.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
