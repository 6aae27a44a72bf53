//! The verifier's budget: older kernels' verifiers prune less than this
//! one, so every program must stay far below the 1M-instruction limit here.

use guard_common::{FEATURE_CSUM, FEATURE_MSS, LinkKind, MssConfig};
use pktguard_tests::Loaded;

/// A quarter of the limit: headroom for verifiers that prune less.
const BUDGET: u32 = 250_000;

#[test]
fn every_program_stays_within_a_quarter_of_the_verifier_limit() {
    for link in [LinkKind::Ethernet, LinkKind::RawIp] {
        let l = Loaded::with_features(MssConfig::new(1400, 1380), link, FEATURE_MSS | FEATURE_CSUM)
            .expect("load");
        let mut report = Vec::new();
        for (name, prog) in l.ebpf.borrow().programs() {
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
        println!("{link:?}: {}", report.join(", "));
    }
}
