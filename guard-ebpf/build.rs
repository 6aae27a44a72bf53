//! Link flags of the eBPF objects (bpf target only; a host build of the
//! library needs none).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        // Verifiers before 5.3 (the incident kernel 4.19) refuse every
        // back-edge: bpf-linker unrolls every loop, and a loop it cannot
        // unroll shows in the host test that looks for back-edges.
        println!("cargo:rustc-link-arg-bins=--unroll-loops");
        // No memset/memcpy functions to call (theirs are loops): a call
        // LLVM would emit fails the link instead of the load on 4.19.
        println!("cargo:rustc-link-arg-bins=--disable-memory-builtins");
    }
}
