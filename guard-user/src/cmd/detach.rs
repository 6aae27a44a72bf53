//! `pktguard detach`: removes what `run --persist` left pinned and attached.

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::{
    guard::tc::detach_netlink_filters,
    host::sys,
    state::{self, abi_path, lock_is_free, lock_path},
};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").args(["iface", "all"]).required(true)))]
pub struct DetachArgs {
    /// The interface to detach.
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
    /// Every interface of this network namespace.
    #[arg(long)]
    all: bool,
}

/// Removes what guards of this network namespace left pinned (their links
/// detach with their pins), refusing interfaces a running pktguard holds.
pub fn run(args: DetachArgs) -> Result<()> {
    let iface = args.iface.as_deref();
    sys::check_privileges()?;
    let mut done = Vec::new();
    for p in state::pinned()? {
        let name = p.iface;
        if iface.is_some_and(|i| i != name) {
            continue;
        }
        let lock = lock_path(&p.key);
        if !lock_is_free(&lock) {
            bail!("{name} is guarded by a running pktguard: stop it first (SIGTERM)");
        }
        let mut links: Vec<String> = std::fs::read_dir(&p.dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("link_"))
            .collect();
        // Before TCX (6.6) a --persist guard leaves netlink filters instead.
        let filters = detach_netlink_filters(&name);
        if filters > 0 {
            links.push(format!("{filters} tc filter(s)"));
        }
        // Removing the last reference to a pinned link detaches it.
        std::fs::remove_dir_all(&p.dir).with_context(|| format!("removing {}", p.dir.display()))?;
        let _ = std::fs::remove_file(&lock);
        let _ = std::fs::remove_file(abi_path(&lock));
        done.push(format!(
            "{name} ({})",
            if links.is_empty() {
                "maps only".to_string()
            } else {
                links.join(", ")
            }
        ));
    }
    match (done.is_empty(), iface) {
        (true, Some(i)) => bail!("nothing of pktguard is pinned for {i} in this network namespace"),
        (true, None) => println!("pktguard: nothing to detach"),
        _ => {
            for d in done {
                println!("pktguard: detached {d}");
            }
        }
    }
    Ok(())
}
