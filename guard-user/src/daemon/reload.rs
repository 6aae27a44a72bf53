//! SIGHUP and the interfaces' comings and goings: the daemon re-reads its
//! file and applies it through the maps, and re-attaches re-created devices.

use std::collections::BTreeMap;

use log::{error, info, warn};

use super::{Daemon, Options, effective, read_config, set_log_level, start_guard};
use crate::{config, host::sys};

impl Daemon {
    /// SIGHUP: re-reads the file; an invalid one changes nothing.
    pub(super) fn reload(&mut self, opts: &Options) {
        let Some(path) = &self.config_path else {
            warn!("SIGHUP: no configuration file to re-read (started without --config)");
            return;
        };
        let new = match read_config(path) {
            Ok(file) => effective(file, opts),
            Err(e) => {
                error!("reload rejected, the running configuration stays: {e:#}");
                return;
            }
        };
        if let Some(bad) = new
            .interfaces
            .iter()
            .find_map(|i| config::validate::iface(i).err())
        {
            error!("reload rejected, the running configuration stays: {bad:#}");
            return;
        }
        let old: BTreeMap<_, _> = self
            .cfg
            .interfaces
            .iter()
            .map(|i| (i.iface.clone(), i.clone()))
            .collect();
        for i in &new.interfaces {
            match (old.get(&i.iface), self.guards.get_mut(&i.iface)) {
                (Some(o), Some(g)) if o == i => {
                    let _ = g;
                }
                (Some(o), Some(g)) if o.same_programs(i) => {
                    match i.features().and_then(|f| g.update(&f)) {
                        Ok(()) => info!("{}: configuration updated in place (maps only)", i.iface),
                        Err(e) => error!("{}: update failed, old values stay: {e:#}", i.iface),
                    }
                }
                _ => {
                    // New interface, or other programs needed: (re)start it.
                    self.guards.remove(&i.iface);
                    match start_guard(i, new.daemon.persist) {
                        Ok(g) => {
                            info!("{}: guard (re)started for its new features", i.iface);
                            self.guards.insert(i.iface.clone(), g);
                        }
                        Err(e) => error!("{}: {e:#}", i.iface),
                    }
                }
            }
        }
        let keep: Vec<String> = new.interfaces.iter().map(|i| i.iface.clone()).collect();
        self.guards.retain(|name, _| {
            let stay = keep.contains(name);
            if !stay {
                info!("{name}: no longer configured: detached");
            }
            stay
        });
        set_log_level(new.daemon.log_level.as_deref());
        self.cfg = new;
        info!("configuration reloaded from {}", path.display());
    }

    /// Re-attaches guards whose interface was re-created.
    pub(super) fn watch(&mut self) {
        for (name, guard) in &mut self.guards {
            match sys::ifindex(name) {
                Err(_) => {
                    if self.missing.insert(name.clone(), ()).is_none() {
                        warn!("{name} disappeared: its guard waits for it to come back");
                    }
                }
                Ok(idx) if idx != guard.iface.ifindex => match guard.reattach() {
                    Ok(()) => {
                        self.missing.remove(name);
                        info!("{name} came back (ifindex {idx}): attached again");
                        println!("pktguard: {name}: re-attached (ifindex {idx})");
                    }
                    Err(e) => warn!("{name}: re-attach failed, will retry: {e:#}"),
                },
                Ok(_) => {
                    self.missing.remove(name);
                }
            }
        }
    }
}
