//! `pktguard events`: one readable line per interesting packet (clamped,
//! repaired, malformed GSO) from the guards of this network namespace,
//! read from their pinned perf event arrays. The programs rate-limit what
//! they send per CPU; a line says how many were suppressed before it.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{
    Map, MapData, PerfEventArray,
    perf::{PerfEvent, PerfEventArrayBuffer},
};
use guard_common::{
    Event, EventKind, GsoOutcome, Hook, MssOutcome, PIN_DIR, PIN_EVENTS, RepairOutcome,
};

use super::json_str;
use crate::{host::sys, state};

#[derive(clap::Args)]
pub struct EventsArgs {
    /// One JSON document per event, one per line.
    #[arg(long)]
    json: bool,
    /// Only this interface.
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Wall-clock time of a CLOCK_MONOTONIC timestamp, in ns since the epoch.
fn wall_ns(mono_ns: u64) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono_now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let wall_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    wall_now.saturating_sub(mono_now.saturating_sub(mono_ns))
}

/// `2026-11-22T19:30:01.123Z` for ns since the epoch (UTC).
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let ms = (ns / 1_000_000) % 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn addr(family: u8, a: &[u8; 16]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*a))),
        _ => None,
    }
}

fn hook_name(h: u8) -> &'static str {
    Hook::ALL
        .iter()
        .find(|x| **x as u8 == h)
        .map_or("?", |x| x.name())
}

fn reason_name(kind: Option<EventKind>, r: u32) -> &'static str {
    match kind {
        Some(EventKind::Clamped) => MssOutcome::ALL
            .iter()
            .find(|o| **o as u32 == r)
            .map_or("?", |o| o.name()),
        Some(EventKind::Repaired) => RepairOutcome::ALL
            .iter()
            .find(|o| **o as u32 == r)
            .map_or("?", |o| o.name()),
        Some(EventKind::GsoDropped | EventKind::GsoFlagged) => GsoOutcome::ALL
            .iter()
            .find(|o| **o as u32 == r)
            .map_or("?", |o| o.name()),
        None => "?",
    }
}

/// One event as a line, or as a JSON document.
pub fn render(iface: &str, ev: &Event, json: bool) -> String {
    let kind = EventKind::from_u8(ev.kind);
    let action = kind.map_or("?", EventKind::name);
    let reason = reason_name(kind, ev.reason);
    let time = rfc3339(wall_ns(ev.ts_ns));
    let proto = match ev.proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        p => p.to_string(),
    };
    let (src, dst) = (addr(ev.family, &ev.saddr), addr(ev.family, &ev.daddr));
    let what = if kind == Some(EventKind::Clamped) {
        "mss"
    } else {
        "len"
    };
    if json {
        let a = |x: Option<IpAddr>| x.map_or("null".to_string(), |x| json_str(&x.to_string()));
        format!(
            "{{\"time\":{},\"iface\":{},\"hook\":{},\"action\":{},\"reason\":{},\"proto\":{},\"src\":{},\"dst\":{},\"sport\":{},\"dport\":{},\"{what}\":{},\"suppressed\":{}}}",
            json_str(&time),
            json_str(iface),
            json_str(hook_name(ev.hook)),
            json_str(action),
            json_str(reason),
            json_str(&proto),
            a(src),
            a(dst),
            ev.sport,
            ev.dport,
            ev.value,
            ev.suppressed
        )
    } else {
        let end = |a: Option<IpAddr>, p: u16| match a {
            Some(IpAddr::V6(a)) => format!("[{a}]:{p}"),
            Some(a) => format!("{a}:{p}"),
            None => "-".to_string(),
        };
        let mut line = format!(
            "{time} {iface} {} {action} ({reason}) {proto} {} -> {} {what} {}",
            hook_name(ev.hook),
            end(src, ev.sport),
            end(dst, ev.dport),
            ev.value
        );
        if ev.suppressed > 0 {
            line.push_str(&format!(" (+{} suppressed before)", ev.suppressed));
        }
        line
    }
}

/// `pktguard events [--json] [--iface IFACE] [--count N]`.
pub fn run(args: EventsArgs) -> Result<()> {
    let EventsArgs { json, iface, count } = args;
    let only = iface.as_deref();
    sys::check_privileges()?;
    let mut sources = Vec::new();
    std::fs::read_dir(PIN_DIR)
        .with_context(|| format!("reading {PIN_DIR}: no pktguard runs here"))?;
    for p in state::pinned()? {
        let iface = p.iface;
        if only.is_some_and(|o| o != iface) {
            continue;
        }
        let pin = p.dir.join(PIN_EVENTS);
        if Path::new(&pin).exists() {
            let map =
                MapData::from_pin(&pin).with_context(|| format!("opening {}", pin.display()))?;
            sources.push((iface, PerfEventArray::try_from(Map::PerfEventArray(map))?));
        }
    }
    if sources.is_empty() {
        bail!(
            "no guarded interface{} in this network namespace",
            only.map(|o| format!(" {o}")).unwrap_or_default()
        );
    }
    let cpus = aya::util::online_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    let mut bufs = Vec::new();
    for (iface, arr) in &mut sources {
        for cpu in &cpus {
            let buf = PerfEventArrayBuffer::open(*cpu, 8)?;
            arr.set(*cpu, &buf)?;
            bufs.push((iface.clone(), buf));
        }
    }
    // Progress on stderr: stdout stays pure JSON with --json.
    eprintln!(
        "pktguard events: listening on {} interface(s), {} CPUs; Ctrl-C stops",
        sources.len(),
        cpus.len()
    );
    let mut seen = 0u64;
    loop {
        let mut fds: Vec<libc::pollfd> = bufs
            .iter()
            .map(|(_, b)| libc::pollfd {
                fd: b.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 500) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll");
        }
        for (i, (iface, buf)) in bufs.iter_mut().enumerate() {
            if fds[i].revents & libc::POLLIN == 0 {
                continue;
            }
            let mut out = Vec::new();
            buf.for_each(|e| {
                if let PerfEvent::Sample { head, tail } = e {
                    let mut bytes = head.to_vec();
                    bytes.extend_from_slice(tail);
                    if bytes.len() >= std::mem::size_of::<Event>() {
                        // SAFETY: at least size_of::<Event>() bytes of a Pod.
                        let ev: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                        out.push(ev);
                    }
                }
            });
            for ev in out {
                println!("{}", render(iface, &ev, json));
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_375_801_123_000_000),
            "2026-11-22T19:30:01.123Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn an_event_as_a_line_and_as_json() {
        let mut ev = Event {
            kind: EventKind::Clamped as u8,
            hook: Hook::TcIngress as u8,
            family: 4,
            proto: 6,
            reason: MssOutcome::Clamped as u32,
            sport: 40000,
            dport: 8080,
            value: 1400,
            ..Event::default()
        };
        ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let line = render("eth0", &ev, false);
        assert!(
            line.ends_with(
                "eth0 tc-ingress clamped (clamped) tcp 10.0.0.1:40000 -> 10.0.0.2:8080 mss 1400"
            ),
            "{line}"
        );
        let json = render("eth0", &ev, true);
        assert!(
            json.contains("\"src\":\"10.0.0.1\",\"dst\":\"10.0.0.2\""),
            "{json}"
        );
        assert!(json.contains("\"mss\":1400"), "{json}");
    }
}
