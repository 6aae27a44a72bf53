//! The GSO guard compiled into the real kernel, under BPF_PROG_TEST_RUN with
//! an `__sk_buff` carrying gso_size and gso_segs: one row per rule, with
//! --gso-guard drop and flag, for both programs. The test harness cannot set
//! gso_type (the skb it builds has none): those rows are host-tested and
//! proven end to end through a tap (e2e_gso).

use guard_common::{
    GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT, GsoAction, GsoConfig, GsoOutcome, LinkKind,
    MssConfig, PROG_TC_GSO, PROG_TC_GSO_TYPED,
};
use guard_ebpf::testpkt::gso_cases;
use pktguard_tests::{Loaded, Table};

const TC_ACT_SHOT: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX;

fn table(prog: &str, action: GsoAction) {
    let mut l = Loaded::new(MssConfig::new(0, 0), LinkKind::Ethernet).expect("load the object");
    if !guard_user::guard::object::gso_size_supported() {
        // Before 5.7 the program reads a field the kernel does not have:
        // its verifier refuses it (and `run --gso-guard` says so first).
        let frame = &gso_cases()[0].frame;
        assert!(
            l.run_gso(prog, frame, 1448, 2).is_err(),
            "{prog} ran without gso_size"
        );
        return;
    }
    l.set_gso(GsoConfig {
        min_size: GSO_MIN_SIZE_DEFAULT,
        max_segs: GSO_MAX_SEGS_DEFAULT,
        action: action as u8,
        _pad: [0; 7],
    })
    .unwrap();
    let mut table = Table::new(&format!("{prog} ({action:?})"));
    for case in gso_cases().into_iter().filter(|c| c.gso_type == 0) {
        let before = l.gso_counters().unwrap();
        let Ok(ran) = l.run_gso(prog, &case.frame, case.gso_size, case.gso_segs) else {
            // The skb harness refuses frames too short for their IP header
            // and frames over a page (the BIG TCP rows: host-tested only).
            assert!(
                case.frame.len() < 34 || case.frame.len() > 4096,
                "{}: the test run failed",
                case.name
            );
            continue;
        };
        let after = l.gso_counters().unwrap();
        let verdict = if case.outcome.is_malformed() && action == GsoAction::Drop {
            TC_ACT_SHOT
        } else {
            TC_ACT_UNSPEC
        };
        // Exactly one outcome per GSO packet; others are not counted.
        let mut why = Vec::new();
        for o in GsoOutcome::ALL {
            let want = (o == case.outcome && o != GsoOutcome::NotGso) as u64;
            let moved = after[o as usize] - before[o as usize];
            if moved != want {
                why.push(format!("{} moved by {moved} (want {want})", o.name()));
            }
        }
        table.row(&case.name, &ran, verdict, &case.frame, why);
    }
    table.finish();
}

pktguard_tests::test_cases!(table {
    drop_table: PROG_TC_GSO, GsoAction::Drop;
    flag_table: PROG_TC_GSO, GsoAction::Flag;
    typed_drop_table: PROG_TC_GSO_TYPED, GsoAction::Drop;
    typed_flag_table: PROG_TC_GSO_TYPED, GsoAction::Flag;
});
