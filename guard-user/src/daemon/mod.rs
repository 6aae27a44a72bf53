//! `pktguard run`: the guards of every configured interface, the drop
//! monitor and the metrics endpoint, until SIGTERM/SIGINT. SIGHUP re-reads
//! the configuration file and applies it through the maps; interfaces that
//! disappear and come back are attached again.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use guard_common::{GsoOutcome, MssCounter, RepairOutcome};
use log::warn;

mod metrics;
mod reload;

use crate::{
    config::{self, Config, DaemonConfig, IfaceConfig},
    drops,
    guard::{Attachment, Features, Guard},
    host::{Iface, sys},
};

/// Where `pktguard reload` finds the daemon that runs from a config file.
pub const PID_FILE: &str = "/run/pktguard/daemon.pid";

/// What `run` was asked on its command line.
pub struct Options {
    /// Interfaces named with --iface (they override the file's sections).
    pub ifaces: Vec<IfaceConfig>,
    pub config: Option<PathBuf>,
    /// Flags that override the file's `[daemon]` section.
    pub metrics_addr: Option<SocketAddr>,
    pub drop_monitor: bool,
    pub persist: bool,
    /// --log-level (over the file's `log_level`, default info).
    pub log_level: Option<String>,
}

fn read_config(path: &Path) -> Result<Config> {
    config::load(path).map_err(|errors| anyhow!("{}", errors.join("\n")))
}

/// The file's configuration with the command line's on top.
fn effective(file: Config, opts: &Options) -> Config {
    let mut cfg = file;
    cfg.interfaces
        .retain(|i| !opts.ifaces.iter().any(|o| o.iface == i.iface));
    cfg.interfaces.extend(opts.ifaces.iter().cloned());
    cfg.daemon = DaemonConfig {
        metrics_addr: opts.metrics_addr.or(cfg.daemon.metrics_addr),
        drop_monitor: opts.drop_monitor || cfg.daemon.drop_monitor,
        persist: opts.persist || cfg.daemon.persist,
        log_level: opts.log_level.clone().or(cfg.daemon.log_level),
    };
    cfg
}

fn set_log_level(level: Option<&str>) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    let filter = level
        .and_then(|l| l.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    log::set_max_level(filter);
}

fn describe(i: &IfaceConfig, f: &Features) {
    if let Some(clamp) = &f.clamp {
        println!("pktguard: {}: {clamp}", i.iface);
    }
    if let Some(repair) = &f.repair {
        println!("pktguard: {}: {repair}", i.iface);
    }
    if let Some(g) = &f.gso {
        println!(
            "pktguard: {}: GSO guard: {} malformed GSO packets (gso_size >= {}, <= {} segments)",
            i.iface,
            config::GsoGuardAction::of(g).name(),
            g.min_size,
            g.max_segs
        );
    }
}

fn start_guard(i: &IfaceConfig, persist: bool) -> Result<Guard> {
    let features = i.features()?;
    describe(i, &features);
    let guard = Iface::resolve(&i.iface)
        .and_then(|iface| Guard::start_with(iface, i.attach, i.direction, &features, persist))
        .with_context(|| format!("guarding {}", i.iface))?;
    let hooks: Vec<_> = guard.attached.iter().map(|a| a.name()).collect();
    println!("pktguard: {}: attached {}", i.iface, hooks.join(" + "));
    for note in &guard.notes {
        println!("pktguard: {}: {note}", i.iface);
    }
    Ok(guard)
}

/// The running daemon's state.
pub(crate) struct Daemon {
    cfg: Config,
    config_path: Option<PathBuf>,
    guards: BTreeMap<String, Guard>,
    /// Interfaces gone (their guard waits for them to come back).
    missing: BTreeMap<String, ()>,
    monitor: Option<drops::DropMonitor>,
}

/// `pktguard run`.
pub fn run(opts: Options) -> Result<()> {
    sys::check_privileges()?;
    sys::check_kernel()?;
    let config_path = match (&opts.config, opts.ifaces.is_empty() && !opts.drop_monitor) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(PathBuf::from(config::DEFAULT_PATH)),
        (None, false) => None,
    };
    let file = match &config_path {
        Some(p) => read_config(p).with_context(|| {
            if opts.config.is_none() {
                "no --iface given, so the configuration file".to_string()
            } else {
                "the configuration file".to_string()
            }
        })?,
        None => Config::default(),
    };
    let cfg = effective(file, &opts);
    set_log_level(cfg.daemon.log_level.as_deref());
    if cfg.interfaces.is_empty() && !cfg.daemon.drop_monitor {
        bail!("nothing to guard: the configuration has no [interface.NAME] section");
    }
    for (n, i) in cfg.interfaces.iter().enumerate() {
        config::validate::iface(i)?;
        sys::ifindex(&i.iface)?;
        if cfg.interfaces[..n].iter().any(|o| o.iface == i.iface) {
            bail!("an interface is named twice in --iface");
        }
        // Out-of-range values and missing tunnel devices, before anything is attached.
        i.features()?;
    }
    let signals = Signals::register()?;
    // Bound before anything is attached: a busy port leaves nothing behind.
    let listener = match cfg.daemon.metrics_addr {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("serving metrics on {addr}"))?,
        ),
        None => None,
    };
    let monitor = if cfg.daemon.drop_monitor {
        let m = drops::DropMonitor::start(true).context("starting the drop monitor")?;
        println!(
            "pktguard: drop monitor: {} attached to kfree_skb; `pktguard drops` shows it",
            m.program
        );
        for n in &m.notes {
            println!("pktguard: drop monitor: {n}");
        }
        Some(m)
    } else {
        None
    };
    if !cfg.interfaces.is_empty() {
        // Once, here: the guards take the fallbacks without a note each.
        for line in crate::host::kernel::missing() {
            println!("pktguard: {line}");
        }
    }
    let mut daemon = Daemon {
        cfg: cfg.clone(),
        config_path: config_path.clone(),
        guards: BTreeMap::new(),
        missing: BTreeMap::new(),
        monitor,
    };
    for i in &cfg.interfaces {
        // An error here drops the guards already started: nothing stays attached.
        let guard = start_guard(i, cfg.daemon.persist)?;
        daemon.guards.insert(i.iface.clone(), guard);
    }
    if config_path.is_some() {
        let _ = std::fs::create_dir_all(guard_common::RUN_DIR);
        let _ = std::fs::write(PID_FILE, std::process::id().to_string());
    }
    if let Some(l) = &listener {
        println!("pktguard: metrics on http://{}/metrics", l.local_addr()?);
    }
    println!(
        "pktguard: running; `pktguard stats` shows the counters; SIGHUP reloads; SIGINT/SIGTERM {}",
        if cfg.daemon.persist {
            "exits and leaves the programs attached (pinned)"
        } else {
            "detaches"
        }
    );
    serve(&mut daemon, &opts, listener, signals)?;
    if config_path.is_some() {
        let _ = std::fs::remove_file(PID_FILE);
    }
    summary(&daemon);
    if daemon.cfg.daemon.persist {
        println!(
            "pktguard: leaving {} interface(s) attached and pinned; `pktguard detach --all` removes them",
            daemon.guards.len()
        );
    } else {
        println!("pktguard: detaching");
    }
    Ok(())
}

/// The runtime and the signals `run` answers, registered before anything
/// is attached: a SIGTERM during start-up is kept and answered by a clean
/// exit once started, never by the default action (which would leave
/// netlink filters, pins and state behind).
struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int, hup) = rt.block_on(async {
            anyhow::Ok((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        Ok(Signals { rt, term, int, hup })
    }
}

fn serve(
    daemon: &mut Daemon,
    opts: &Options,
    listener: Option<std::net::TcpListener>,
    signals: Signals,
) -> Result<()> {
    let Signals {
        rt,
        mut term,
        mut int,
        mut hup,
    } = signals;
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let listener = match listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                Some(tokio::net::TcpListener::from_std(l)?)
            }
            None => None,
        };
        loop {
            tokio::select! {
                _ = term.recv() => return anyhow::Ok(()),
                _ = int.recv() => return Ok(()),
                _ = hup.recv() => daemon.reload(opts),
                _ = tick.tick() => daemon.watch(),
                Ok((stream, _)) = async {
                    match &listener {
                        Some(l) => l.accept().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let body = metrics::render(daemon.guards.values(), daemon.monitor.as_ref());
                    if let Err(e) = metrics::respond(stream, body).await {
                        warn!("metrics request: {e:#}");
                    }
                }
            }
        }
    })
}

fn summary(daemon: &Daemon) {
    for guard in daemon.guards.values() {
        if let Ok(hooks) = guard.counters()
            && guard.features.clamp.is_some()
        {
            let clamped: u64 = hooks.iter().map(|h| h.get(MssCounter::Clamped)).sum();
            let syn: u64 = hooks.iter().map(|h| h.get(MssCounter::Syn)).sum();
            println!(
                "pktguard: {}: {syn} SYNs seen, {clamped} clamped",
                guard.iface
            );
        }
        if let Ok(g) = guard.gso_counters()
            && guard.attached.contains(&Attachment::TcGso)
        {
            let bad: u64 = GsoOutcome::ALL
                .iter()
                .filter(|o| o.is_malformed())
                .map(|o| g[*o as usize])
                .sum();
            println!(
                "pktguard: {}: {} GSO packets, {bad} malformed",
                guard.iface,
                g.iter().sum::<u64>() - g[GsoOutcome::NotGso as usize]
            );
        }
        if let Ok(hooks) = guard.repair_counters()
            && guard.features.repair.is_some()
        {
            let seen: u64 = hooks.iter().map(|h| h.vxlan_seen()).sum();
            let fixed: u64 = hooks
                .iter()
                .map(|h| h.get(RepairOutcome::OuterRepaired))
                .sum();
            let bad: u64 = hooks.iter().map(|h| h.get(RepairOutcome::InnerBad)).sum();
            println!(
                "pktguard: {}: {seen} VXLAN frames, {fixed} outer checksums repaired, {bad} corrupt left alone",
                guard.iface
            );
        }
    }
    if let Some(m) = &daemon.monitor
        && let Ok((snap, _)) = m.snapshot()
    {
        let Ok(mut names) = drops::IfaceNames::new() else {
            return;
        };
        let rows = drops::rows(
            &snap,
            &Default::default(),
            Duration::from_secs(1),
            &Default::default(),
            5,
            |k| drops::name_key(m, &mut names, k),
        );
        println!(
            "pktguard: drop monitor: {} drops counted; most frequent:",
            snap.values().sum::<u64>()
        );
        for r in rows {
            println!(
                "pktguard:   {:>10}  {:<24} {:<6} {:<16} {}",
                r.total, r.reason, r.protocol, r.iface, r.location
            );
        }
    }
}
