//! Link flags of the eBPF objects (bpf target only; a host build of the
//! library needs none).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        // Verifiers before 5.3 (the incident kernel 4.19) refuse every
        // back-edge: bpf-linker unrolls every loop, and a loop it cannot
        // unroll shows in the host test that looks for back-edges.
        println!("cargo:rustc-link-arg-bins=--unroll-loops");
        // Not --disable-memory-builtins: with it, 4.19 refused guard_xdp
        // with E2BIG before its verifier ran (empty log). The host test
        // objects::no_object_calls_a_mem_builtin keeps the calls out.
    }
}
