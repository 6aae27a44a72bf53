//! `/etc/pktguard/config.toml`: one section per interface with its features
//! and their parameters, and a `[daemon]` section. Parsed with serde and
//! checked field by field, through the same validator as the flags; every
//! error names its line and field.
//!
//! ```toml
//! [daemon]
//! metrics_addr = "127.0.0.1:9436"
//! drop_monitor = true
//! persist = true
//!
//! [interface.eth0]
//! mtu = 1450                 # or tunnel_dev = "flannel.1", or underlay_mtu + encap
//! csum_repair = true
//! peer_cidrs = ["10.0.0.0/16"]
//! gso_guard = "drop"
//! ```

use std::{collections::BTreeMap, ops::Range};

use clap::ValueEnum;
use guard_common::{GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT, GsoConfig};
use serde::Deserialize;
use toml::Spanned;

use super::{
    ClampSource, Config, IfaceConfig,
    clamp::{Clamp, Encap},
    repair::{Cidr, RepairMode, RepairSpec},
    validate::{self, Door, GsoGuardAction},
};
use crate::guard::{AttachMode, Direction};

pub const DEFAULT_PATH: &str = "/etc/pktguard/config.toml";

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    interface: BTreeMap<String, RawIface>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    metrics_addr: Option<Spanned<String>>,
    drop_monitor: Option<bool>,
    persist: Option<bool>,
    log_level: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawIface {
    attach: Option<Spanned<String>>,
    direction: Option<Spanned<String>>,
    mtu: Option<Spanned<u32>>,
    tunnel_dev: Option<Spanned<String>>,
    underlay_mtu: Option<Spanned<u32>>,
    encap: Option<Spanned<String>>,
    #[serde(default)]
    csum_repair: bool,
    vxlan_ports: Option<Spanned<Vec<u16>>>,
    peer_cidrs: Option<Vec<Spanned<String>>>,
    vxlan_csum: Option<Spanned<String>>,
    gso_guard: Option<Spanned<String>>,
    gso_min_size: Option<Spanned<u32>>,
    gso_max_segs: Option<Spanned<u32>>,
}

/// Line number (1-based) of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

struct Errors<'a> {
    text: &'a str,
    file: &'a str,
    list: Vec<String>,
}

impl Errors<'_> {
    fn at(&mut self, span: Range<usize>, field: &str, msg: impl std::fmt::Display) {
        self.list.push(format!(
            "{}:{}: {field}: {msg}",
            self.file,
            line_of(self.text, span.start)
        ));
    }
}

/// One of `T`'s names (`ignore_case` as the field always took it).
fn choice<T: ValueEnum>(
    e: &mut Errors,
    v: &Option<Spanned<String>>,
    field: &str,
    ignore_case: bool,
) -> Option<T> {
    let v = v.as_ref()?;
    match T::from_str(v.get_ref(), ignore_case) {
        Ok(x) => Some(x),
        Err(_) => {
            let names: Vec<String> = T::value_variants()
                .iter()
                .filter_map(|x| x.to_possible_value().map(|p| p.get_name().to_string()))
                .collect();
            e.at(
                v.span(),
                field,
                format!("{:?} is not one of {}", v.get_ref(), names.join(", ")),
            );
            None
        }
    }
}

/// Parses and checks a configuration; `file` names it in messages. Every
/// error found is returned, each with its line and field.
pub fn parse(text: &str, file: &str) -> std::result::Result<Config, Vec<String>> {
    let raw: RawFile = toml::from_str(text).map_err(|err| {
        let line = err.span().map_or(0, |s| line_of(text, s.start));
        vec![format!("{file}:{line}: {}", err.message().trim())]
    })?;
    let mut e = Errors {
        text,
        file,
        list: Vec::new(),
    };
    let mut cfg = Config::default();
    if let Some(a) = &raw.daemon.metrics_addr {
        match a.get_ref().parse() {
            Ok(addr) => cfg.daemon.metrics_addr = Some(addr),
            Err(_) => e.at(
                a.span(),
                "daemon.metrics_addr",
                format!(
                    "{:?} is not an address:port like 127.0.0.1:9436",
                    a.get_ref()
                ),
            ),
        }
    }
    if let Some(l) = &raw.daemon.log_level {
        if validate::LOG_LEVELS.contains(&l.get_ref().as_str()) {
            cfg.daemon.log_level = Some(l.get_ref().clone());
        } else {
            e.at(
                l.span(),
                "daemon.log_level",
                "use error, warn, info, debug or trace",
            );
        }
    }
    cfg.daemon.drop_monitor = raw.daemon.drop_monitor.unwrap_or(false);
    cfg.daemon.persist = raw.daemon.persist.unwrap_or(false);
    for (name, r) in &raw.interface {
        let f = |field: &str| format!("interface.{name}.{field}");
        let iface_name_ok = !name.is_empty() && name.len() < 16 && !name.contains(['/', ' ']);
        if !iface_name_ok {
            e.list
                .push(format!("{file}: interface.{name}: not an interface name"));
        }
        let attach =
            choice::<AttachMode>(&mut e, &r.attach, &f("attach"), true).unwrap_or(AttachMode::Auto);
        let direction = choice::<Direction>(&mut e, &r.direction, &f("direction"), true)
            .unwrap_or(Direction::Both);
        let clamp = match (&r.mtu, &r.tunnel_dev, &r.underlay_mtu, &r.encap) {
            (Some(m), None, None, None) => match Clamp::from_mtu(*m.get_ref()) {
                Ok(_) => Some(ClampSource::Mtu(*m.get_ref())),
                Err(err) => {
                    e.at(m.span(), &f("mtu"), err);
                    None
                }
            },
            (None, Some(d), None, None) => Some(ClampSource::TunnelDev(d.get_ref().clone())),
            (None, None, Some(m), Some(_)) => {
                let encap = choice::<Encap>(&mut e, &r.encap, &f("encap"), true);
                match encap.map(|x| (Clamp::from_underlay(*m.get_ref(), x), x)) {
                    Some((Ok(_), x)) => Some(ClampSource::Underlay(*m.get_ref(), x)),
                    Some((Err(err), _)) => {
                        e.at(m.span(), &f("underlay_mtu"), err);
                        None
                    }
                    None => None,
                }
            }
            (None, None, None, None) => None,
            (Some(m), ..) | (_, _, Some(m), _) => {
                e.at(
                    m.span(),
                    &f("mtu"),
                    "give one of mtu, tunnel_dev, or underlay_mtu with encap",
                );
                None
            }
            (None, Some(d), ..) => {
                e.at(
                    d.span(),
                    &f("tunnel_dev"),
                    "give one of mtu, tunnel_dev, or underlay_mtu with encap",
                );
                None
            }
            (None, None, None, Some(x)) => {
                e.at(x.span(), &f("encap"), "encap goes with underlay_mtu");
                None
            }
        };
        let mut cidrs = Vec::new();
        for c in r.peer_cidrs.iter().flatten() {
            match c.get_ref().parse::<Cidr>() {
                Ok(x) => cidrs.push(x),
                Err(err) => e.at(c.span(), &f("peer_cidrs"), err),
            }
        }
        let mode = choice::<RepairMode>(&mut e, &r.vxlan_csum, &f("vxlan_csum"), true)
            .unwrap_or(RepairMode::Recompute);
        let ports = r
            .vxlan_ports
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_default();
        let repair = if r.csum_repair {
            match RepairSpec::new(&ports, &cidrs, mode) {
                Ok(spec) => Some(spec),
                Err(err) => {
                    let span = r.vxlan_ports.as_ref().map_or(0..0, Spanned::span);
                    e.at(span, &f("csum_repair"), err);
                    None
                }
            }
        } else {
            for (set, field, span) in [
                (
                    r.vxlan_ports.is_some(),
                    "vxlan_ports",
                    r.vxlan_ports.as_ref().map(Spanned::span),
                ),
                (
                    r.peer_cidrs.is_some(),
                    "peer_cidrs",
                    r.peer_cidrs
                        .as_ref()
                        .and_then(|c| c.first())
                        .map(Spanned::span),
                ),
                (
                    r.vxlan_csum.is_some(),
                    "vxlan_csum",
                    r.vxlan_csum.as_ref().map(Spanned::span),
                ),
            ] {
                if set {
                    e.at(span.unwrap_or(0..0), &f(field), "needs csum_repair = true");
                }
            }
            None
        };
        let action = choice::<GsoGuardAction>(&mut e, &r.gso_guard, &f("gso_guard"), false);
        let mut limit = |v: &Option<Spanned<u32>>, field: &str, default: u32| match v {
            Some(x) => validate::gso_limit(*x.get_ref()).unwrap_or_else(|err| {
                e.at(x.span(), &f(field), err);
                default
            }),
            None => default,
        };
        let min_size = limit(&r.gso_min_size, "gso_min_size", GSO_MIN_SIZE_DEFAULT);
        let max_segs = limit(&r.gso_max_segs, "gso_max_segs", GSO_MAX_SEGS_DEFAULT);
        if action.is_none() {
            for (v, field) in [
                (&r.gso_min_size, "gso_min_size"),
                (&r.gso_max_segs, "gso_max_segs"),
            ] {
                if let Some(x) = v
                    && r.gso_guard.is_none()
                {
                    e.at(
                        x.span(),
                        &f(field),
                        format!(
                            "needs gso_guard = {:?} or {:?}",
                            GsoGuardAction::Drop.name(),
                            GsoGuardAction::Flag.name()
                        ),
                    );
                }
            }
        }
        let gso: Option<GsoConfig> = action.map(|a| a.config(min_size, max_segs));
        if clamp.is_none()
            && repair.is_none()
            && gso.is_none()
            && r.gso_guard.is_none()
            && !r.csum_repair
            && r.mtu.is_none()
            && r.tunnel_dev.is_none()
            && r.underlay_mtu.is_none()
        {
            e.list.push(format!(
                "{file}: interface.{name}: {}",
                validate::nothing_to_do(Door::File)
            ));
        }
        cfg.interfaces.push(IfaceConfig {
            iface: name.clone(),
            attach,
            direction,
            clamp,
            repair,
            gso,
        });
    }
    if e.list.is_empty() {
        Ok(cfg)
    } else {
        Err(e.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
metrics_addr = "127.0.0.1:9436"
drop_monitor = true
persist = true

[interface.eth0]
mtu = 1450
csum_repair = true
vxlan_ports = [8472]
peer_cidrs = ["10.0.0.0/16"]
gso_guard = "drop"

[interface."flannel.1"]
underlay_mtu = 1500
encap = "vxlan"
attach = "tc"
direction = "ingress"
"#;

    #[test]
    fn a_good_file() {
        let c = parse(GOOD, "c.toml").unwrap();
        assert_eq!(
            c.daemon.metrics_addr,
            Some("127.0.0.1:9436".parse().unwrap())
        );
        assert!(c.daemon.drop_monitor && c.daemon.persist);
        assert_eq!(c.interfaces.len(), 2);
        let eth0 = &c.interfaces[0];
        assert_eq!(eth0.iface, "eth0");
        assert_eq!(eth0.clamp, Some(ClampSource::Mtu(1450)));
        assert_eq!(eth0.repair.as_ref().unwrap().peers.len(), 1);
        assert_eq!(eth0.gso.unwrap().min_size, GSO_MIN_SIZE_DEFAULT);
        let f = &c.interfaces[1];
        assert_eq!(f.clamp, Some(ClampSource::Underlay(1500, Encap::Vxlan)));
        assert_eq!(
            (f.attach, f.direction),
            (AttachMode::Tc, Direction::Ingress)
        );
        let mut changed = eth0.clone();
        changed.clamp = Some(ClampSource::Mtu(1400));
        assert!(eth0.same_programs(&changed));
        changed.gso = None;
        assert!(!eth0.same_programs(&changed));
    }

    #[test]
    fn every_error_names_its_line_and_field() {
        let bad = "[interface.eth0]\nmtu = 100\ngso_guard = \"explode\"\n\n[interface.eth1]\nattach = \"sideways\"\npeer_cidrs = [\"10.0.0.0/99\"]\n";
        let errs = parse(bad, "c.toml").unwrap_err();
        let joined = errs.join("\n");
        assert!(joined.contains("c.toml:2: interface.eth0.mtu:"), "{joined}");
        assert!(
            joined.contains("c.toml:3: interface.eth0.gso_guard:"),
            "{joined}"
        );
        assert!(
            joined.contains("c.toml:6: interface.eth1.attach:"),
            "{joined}"
        );
        assert!(
            joined.contains("c.toml:7: interface.eth1.peer_cidrs:"),
            "{joined}"
        );
        // eth1's peer_cidrs without csum_repair is an error too.
        assert!(errs.len() >= 4, "{joined}");
    }

    #[test]
    fn unknown_keys_and_syntax_errors() {
        let errs = parse("[interface.eth0]\nmtu = 1450\nmsss = 3\n", "c.toml").unwrap_err();
        assert!(
            errs[0].starts_with("c.toml:3:") && errs[0].contains("msss"),
            "{errs:?}"
        );
        let errs = parse("[interface.eth0\n", "c.toml").unwrap_err();
        assert!(errs[0].starts_with("c.toml:1:"), "{errs:?}");
        let errs = parse("[interface.eth0]\n", "c.toml").unwrap_err();
        assert!(errs[0].contains("nothing to do"), "{errs:?}");
        let errs = parse("[daemon]\nmetrics_addr = \"localhost\"\n", "c.toml").unwrap_err();
        assert!(
            errs[0].starts_with("c.toml:2: daemon.metrics_addr"),
            "{errs:?}"
        );
        assert_eq!(parse("", "c.toml").unwrap(), Config::default());
    }
}
