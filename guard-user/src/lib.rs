//! The userspace side of pktguard: the command line (`cmd/`), the
//! configuration and its validator (`config/`), the guard of one interface
//! (`guard/`), the daemon, the host it runs on (`host/`), the run state, the
//! drop monitor, doctor and labs, and the eBPF objects they load.

pub mod cmd;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod drops;
pub mod guard;
pub mod host;
pub mod lab;
pub mod objects;
pub mod state;
