//! With the `dpdk` feature: bindgen over the system libdpdk (pkg-config
//! `libdpdk`; its cflags carry `-include rte_config.h` and `-march`, given to
//! both bindgen and cc), the C shim compiled with the same flags, and the
//! link line pkg-config gives. Without it: nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;

    pub fn build() {
        println!("cargo:rerun-if-changed=src/wrapper.h");
        println!("cargo:rerun-if-changed=src/shim.c");
        let lib = pkg_config::Config::new()
            .atleast_version("21.11")
            .probe("libdpdk")
            .unwrap_or_else(|e| {
                panic!(
                    "the `dpdk` feature needs the system DPDK (apt-get install libdpdk-dev): {e}"
                )
            });
        let cflags = cflags();
        let mut cc = cc::Build::new();
        cc.file("src/shim.c").warnings(false);
        for p in &lib.include_paths {
            cc.include(p);
        }
        for f in &cflags {
            cc.flag(f);
        }
        cc.compile("sbc_dpdk_shim");

        let mut b = bindgen::Builder::default()
            .header("src/wrapper.h")
            .use_core()
            .ctypes_prefix("core::ffi")
            .allowlist_function("rte_.*|sbc_.*")
            .allowlist_type("rte_.*")
            .allowlist_var("RTE_.*")
            // Packed/aligned protocol headers bindgen cannot lay out.
            .opaque_type("rte_l2tpv2_.*")
            .opaque_type("rte_gtp_psc_.*")
            .derive_default(true)
            .layout_tests(false)
            .generate_comments(false)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
        for p in &lib.include_paths {
            b = b.clang_arg(format!("-I{}", p.display()));
        }
        for f in &cflags {
            b = b.clang_arg(f);
        }
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        b.generate()
            .expect("bindgen over rte_*.h")
            .write_to_file(out.join("bindings.rs"))
            .expect("writing bindings.rs");
    }

    /// `pkg-config --cflags libdpdk` minus the include paths (given apart).
    fn cflags() -> Vec<String> {
        let out = std::process::Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("running pkg-config");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut flags = Vec::new();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w.starts_with("-I") {
                continue;
            }
            if w == "-include" {
                if let Some(file) = words.next() {
                    flags.push(format!("-include{file}"));
                }
                continue;
            }
            flags.push(w.to_string());
        }
        flags
    }
}
