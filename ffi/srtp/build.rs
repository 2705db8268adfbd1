//! bindgen over the system libsrtp2 (pkg-config `libsrtp2`, 2.3 or later:
//! AEAD_AES_128_GCM needs a build with a crypto backend, as Debian's is)
//! and its link line.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    let lib = pkg_config::Config::new()
        .atleast_version("2.3")
        .probe("libsrtp2")
        .unwrap_or_else(|e| {
            panic!("the `srtp` feature needs the system libsrtp2 (apt-get install libsrtp2-dev libclang-dev): {e}")
        });
    let mut b = bindgen::Builder::default()
        .header("src/wrapper.h")
        .use_core()
        .ctypes_prefix("core::ffi")
        .allowlist_function("srtp_.*")
        .allowlist_type("srtp_.*")
        .allowlist_var("SRTP_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for p in &lib.include_paths {
        b = b.clang_arg(format!("-I{}", p.display()));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    b.generate()
        .expect("bindgen over srtp2/srtp.h")
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");
}
