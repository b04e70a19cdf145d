//! Before anything starts: every port the stack will listen on must be free.

use anyhow::{bail, Result};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// How long a port held by no visible process (one still exiting after a
/// crash) may take to come free.
const EXITING_GRACE: Duration = Duration::from_secs(5);

/// Fails naming each taken port and the process that holds it.
pub fn check<'a>(wanted: impl IntoIterator<Item = (&'a str, SocketAddr)>) -> Result<()> {
    let wanted: Vec<(&str, SocketAddr)> = wanted.into_iter().collect();
    for (i, (first, addr)) in wanted.iter().enumerate() {
        if let Some((second, _)) = wanted[i + 1..]
            .iter()
            .find(|(_, a)| a.port() == addr.port())
        {
            bail!(
                "nothing was started: port {} is given to both {first} and {second}",
                addr.port()
            );
        }
    }
    let mut taken = Vec::new();
    for (service, addr) in wanted {
        let deadline = Instant::now() + EXITING_GRACE;
        let held = loop {
            let Err(e) = TcpListener::bind(addr) else {
                break None;
            };
            match listeners::get_process_by_port(addr.port(), listeners::Protocol::TCP) {
                Ok(p) => break Some(format!("{} (pid {}, {})", p.name, p.pid, p.path)),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(_) => break Some(format!("a process this user cannot see ({e})")),
            }
        };
        if let Some(holder) = held {
            taken.push(format!(
                "  port {} for {service} is taken by {holder}",
                addr.port()
            ));
        }
    }
    if !taken.is_empty() {
        bail!(
            "nothing was started:\n{}\nStop what holds them, or choose other ports \
             (AIES_LISTEN, AIES_BRIDGE_LISTEN, REDIS_PORT, KAFKA_BOOTSTRAP_SERVERS)",
            taken.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named_with_its_holder() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = check([("redis", addr)]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("port {} for redis", addr.port())),
            "{e}"
        );
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        check([("redis", addr)]).unwrap();
        let e = check([("redis", addr), ("host", addr)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("given to both redis and host"), "{e}");
    }
}
