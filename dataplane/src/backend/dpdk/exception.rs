//! The exception path of the public side: a DPDK `net_tap` port whose
//! kernel interface holds the public address, so the kernel's TCP stack
//! carries SIP over TCP and TLS (the control plane's stream layer binds
//! there as on the socket backend) while RTP and UDP SIP stay on the fast
//! path.
//!
//! ```text
//!  public port ─rx─► classify ─ UDP, ARP for us, ICMP echo ─► poll loop (as before)
//!                          └── TCP, ICMP errors, ARP replies, other ──► tap ─► kernel
//!  kernel ─► tap ─rx─► public port (unchanged: the tap has the public port's MAC)
//! ```
//! The SBC creates the tap (`--vdev=net_tap_sbc,iface=<name>`), gives it the
//! public port's MAC, and configures the interface with `ip` (iproute2):
//! up, the public address with its prefix, and a default route via the
//! public next hop when there is one.

use std::net::Ipv4Addr;
use std::process::Command;

use super::StartError;
use crate::dpdk::{Eal, Mempool, Port};
use crate::net::{Kind, Reason};

/// The tap's DPDK device name.
const TAP_NAME: &str = "net_tap_sbc";

/// The EAL argument that creates the tap with kernel interface `iface`.
pub fn vdev_arg(iface: &str) -> String {
    format!("--vdev={TAP_NAME},iface={iface}")
}

/// Whether a frame of the public port goes to the kernel: one the poll
/// loop does not own (TCP, ICMP other than echo, other IP protocols,
/// other ethertypes). ARP replies go too, after the poll loop learned
/// from them (in the ARP handling).
pub fn for_kernel(kind: &Kind) -> bool {
    matches!(kind, Kind::Drop(Reason::Unsupported))
}

/// Starts the tap port with the public port's `mac` and configures its
/// kernel interface `iface` with `addr/prefix` (and a default route via
/// `next_hop`). Errors name the DPDK call or the `ip` command that failed.
pub fn open(
    eal: &Eal,
    pool: &Mempool,
    iface: &str,
    mac: [u8; 6],
    (addr, prefix): (Ipv4Addr, u8),
    next_hop: Option<Ipv4Addr>,
) -> Result<Port, StartError> {
    let mut port = Port::by_name(eal, TAP_NAME)?;
    port.set_mac(mac)?;
    port.start(1, 512, pool)?;
    ip(&["link", "set", "dev", iface, "up"])?;
    ip(&["addr", "replace", &format!("{addr}/{prefix}"), "dev", iface])?;
    if let Some(nh) = next_hop {
        ip(&[
            "route",
            "replace",
            "default",
            "via",
            &nh.to_string(),
            "dev",
            iface,
        ])?;
    }
    Ok(port)
}

fn ip(args: &[&str]) -> Result<(), StartError> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        StartError::Config(format!(
            "dataplane.dpdk.exception_iface: running `ip {}`: {e} (iproute2 is needed)",
            args.join(" ")
        ))
    })?;
    if !out.status.success() {
        return Err(StartError::Config(format!(
            "dataplane.dpdk.exception_iface: `ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
