//! The guards of this network namespace as the doctor sees them: their
//! run-state files in /run/pktguard, read through the [`Host`] (a fixture
//! tree or the live host) and parsed by the one parser in [`crate::state`].

use crate::{doctor::Host, state::RunState};

/// One guard's run state and whether its daemon still holds the lock.
pub(super) struct GuardState {
    pub key: String,
    pub state: RunState,
    pub running: bool,
}

impl GuardState {
    /// Attached now: by a running daemon, or pinned by `--persist`.
    pub fn attached(&self) -> bool {
        self.running || self.state.persist
    }
}

/// The pktguard guards of this network namespace, from their state files.
pub(super) fn guard_states(host: &dyn Host) -> Vec<GuardState> {
    let dir = guard_common::RUN_DIR;
    let suffix = host.key_suffix();
    host.list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| crate::state::iface_of_state_file(f, &suffix).is_some())
        .map(|f| {
            let path = format!("{dir}/{f}");
            GuardState {
                key: f.trim_end_matches(".lock").to_string(),
                state: RunState::parse(&host.read(&path).unwrap_or_default()),
                running: host.lock_held(&path),
            }
        })
        .collect()
}
