//! A seconds-long run of the rate benchmark's harness, so that it cannot
//! rot: trafgen, the router's hooks, the sink's counter, the JSON and the
//! chart. It asserts that packets were forwarded and files written, never a
//! timing.

use std::time::Duration;

use pktguard_tests::rate::{self, Hook, Kind, Options};

#[test]
fn rate_harness_smoke_run() {
    let dir = std::env::temp_dir().join(format!(
        "pktguard-bench-{}",
        guard_user::lab::netns::unique_tag()
    ));
    let opts = Options {
        rounds: 1,
        window: Duration::from_millis(300),
        warmup: Duration::from_millis(200),
        hooks: vec![Hook::None, Hook::Nftables, Hook::PktguardTc],
        kinds: vec![Kind::Syn],
        out_dir: dir.clone(),
    };
    let r = rate::run(&opts).unwrap();
    assert_eq!(r.series.len(), 3);
    for s in &r.series {
        // A discarded round (a busy CI machine) still measured something.
        assert_eq!(s.pps.len(), 1, "{s:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&r.json).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        // Every hook forwarded (its round may be discarded on a busy machine).
        let pps = row["pps"][0].as_f64().expect("a measured rate");
        assert!(pps > 1000.0, "{row}");
        assert!(row["kept"][0].is_boolean(), "{row}");
    }
    let svg = std::fs::read_to_string(&r.svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<rect"), "{svg}");
    let _ = std::fs::remove_dir_all(dir);
}
