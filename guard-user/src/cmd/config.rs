//! `pktguard config check`: validates a configuration file.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;

use crate::config;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file: every error with its line and field.
    Check {
        /// The file (default /etc/pktguard/config.toml).
        path: Option<PathBuf>,
    },
}

pub fn run(cmd: ConfigCommand) -> ExitCode {
    let ConfigCommand::Check { path } = cmd;
    let path = path.unwrap_or_else(|| config::DEFAULT_PATH.into());
    match config::load(&path) {
        Ok(c) => {
            println!(
                "{}: ok: {} interface(s){}",
                path.display(),
                c.interfaces.len(),
                if c.daemon.drop_monitor {
                    ", drop monitor"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("pktguard: error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
