//! The lab: incidents rebuilt in network namespaces, run before and after the
//! guard, each with a verdict. One module per feature; `netns` builds them.

pub mod gso;
pub mod mss;
pub mod netns;
pub mod repair;

use std::{
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

/// "IPv4" or "IPv6".
pub fn family(v6: bool) -> &'static str {
    if v6 { "IPv6" } else { "IPv4" }
}

/// The one connection a non-blocking `listener` accepts by `deadline`, or
/// none: the lab's servers must give up when the path is broken.
fn accept_until(listener: &TcpListener, deadline: Instant) -> std::io::Result<Option<TcpStream>> {
    loop {
        match listener.accept() {
            Ok((c, _)) => return Ok(Some(c)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A lab's last line: `verdict: OK: {ok_text}`, or the error that points
/// back at the lines above.
fn verdict(ok: bool, ok_text: &str, see: &str) -> Result<()> {
    if ok {
        println!("verdict: OK: {ok_text}");
        Ok(())
    } else {
        bail!("verdict: UNEXPECTED: see {see}")
    }
}
