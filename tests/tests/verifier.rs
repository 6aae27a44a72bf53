//! The verifier's budget: older kernels' verifiers prune less than this
//! one, so every program of every object must stay far below the
//! 1M-instruction limit here. And what each object and the release binary
//! hold: the guard no drop monitor map, the binary no bench program.

use guard_common::{
    CSUM_CONFIG_MAP, CSUM_COUNTERS_MAP, DROPS_LOST_MAP, DROPS_MAP, EVENTS_MAP, FEATURE_CSUM,
    FEATURE_MSS, GSO_CONFIG_MAP, GSO_COUNTERS_MAP, LAB_SNAT_COUNTERS_MAP, LinkKind, MSS_CONFIG_MAP,
    MSS_COUNTERS_MAP, MssConfig, PEERS_V4_MAP, PEERS_V6_MAP, PROG_BENCH_CSUM_PASS_TC,
    PROG_BENCH_CSUM_PASS_XDP, PROG_BENCH_EMPTY_TC, PROG_BENCH_EMPTY_XDP,
    PROG_BENCH_EMPTY_XDP_FRAGS, PROG_XDP,
};
use pktguard_tests::Loaded;

/// A quarter of the limit: headroom for verifiers that prune less.
const BUDGET: u32 = 250_000;

#[test]
fn every_program_stays_within_a_quarter_of_the_verifier_limit() {
    for link in [LinkKind::Ethernet, LinkKind::RawIp] {
        let l = Loaded::with_features(MssConfig::new(1400, 1380), link, FEATURE_MSS | FEATURE_CSUM)
            .expect("load");
        let mut report = Vec::new();
        for object in l.objects() {
            for (name, prog) in object.borrow().programs() {
                if prog.fd().is_err() {
                    // Not loaded on this kernel (with_features says which and why).
                    report.push(format!("{name}: not loaded"));
                    continue;
                }
                let Some(n) = prog
                    .info()
                    .expect("program info")
                    .verified_instruction_count()
                else {
                    // Loaded (verified); the count is reported since 5.16.
                    let v = guard_user::host::sys::kernel_version().unwrap();
                    assert!(
                        v < (5, 16),
                        "{name}: no verified instruction count on {v:?}"
                    );
                    report.push(format!("{name}: verified (count reported since 5.16)"));
                    continue;
                };
                report.push(format!("{name}: {n}"));
                assert!(
                    n < BUDGET,
                    "{link:?} {name}: the verifier processed {n} instructions"
                );
            }
        }
        println!("{link:?}: {}", report.join(", "));
    }
}

/// aya creates every map of an object at load: the guard's object must not
/// carry the drop monitor's 16,384-entry preallocated hash (nor the lab's).
#[test]
fn the_guard_object_has_its_maps_and_not_the_drop_monitors() {
    let ebpf = guard_user::guard::object::load(LinkKind::Ethernet, FEATURE_MSS).expect("load");
    let maps: Vec<&str> = ebpf.maps().map(|(name, _)| name).collect();
    for name in [DROPS_MAP, DROPS_LOST_MAP, LAB_SNAT_COUNTERS_MAP] {
        assert!(
            !maps.contains(&name),
            "the guard's object has {name}: {maps:?}"
        );
    }
    for name in [
        MSS_CONFIG_MAP,
        MSS_COUNTERS_MAP,
        CSUM_CONFIG_MAP,
        CSUM_COUNTERS_MAP,
        PEERS_V4_MAP,
        PEERS_V6_MAP,
        GSO_CONFIG_MAP,
        GSO_COUNTERS_MAP,
        EVENTS_MAP,
    ] {
        assert!(
            maps.contains(&name),
            "the guard's object lacks {name}: {maps:?}"
        );
    }
}

/// The release binary embeds the guard, drop monitor and lab objects, and
/// not the bench object (the tests crate's own).
#[test]
fn the_release_binary_carries_no_bench_program() {
    let bin = pktguard_tests::pktguard_bin();
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("reading {}: {e}", bin.display()));
    let has = |name: &str| bytes.windows(name.len()).any(|w| w == name.as_bytes());
    // The search finds what is there: the guard's programs are.
    assert!(has(PROG_XDP), "{} has no {PROG_XDP}", bin.display());
    for name in [
        PROG_BENCH_EMPTY_XDP,
        PROG_BENCH_EMPTY_TC,
        PROG_BENCH_EMPTY_XDP_FRAGS,
        PROG_BENCH_CSUM_PASS_XDP,
        PROG_BENCH_CSUM_PASS_TC,
    ] {
        assert!(!has(name), "{} carries {name}", bin.display());
    }
}
