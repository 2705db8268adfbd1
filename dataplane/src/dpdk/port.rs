//! Ethernet ports.

use std::ffi::CString;

use dpdk_sys as sys;

use super::{check, Burst, DpdkError, Eal, Mempool, BURST};

/// One ethdev port. Not `Sync`: a queue must be polled by one thread only,
/// and `rx_burst`/`tx_burst` take `&self`.
#[derive(Debug)]
pub struct Port {
    id: u16,
    started: bool,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Whether the link is up (`link_status`).
    pub up: bool,
    /// Link speed in Mbps, as `link_speed` gives it (0: not defined, `u32::MAX`: unknown).
    pub speed_mbps: u32,
}

/// The driver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received (`ipackets`).
    pub rx_packets: u64,
    /// Packets sent (`opackets`).
    pub tx_packets: u64,
    /// Bytes received (`ibytes`).
    pub rx_bytes: u64,
    /// Bytes sent (`obytes`).
    pub tx_bytes: u64,
    /// Dropped by the hardware/driver for lack of rx descriptors or mbufs.
    pub rx_missed: u64,
    /// Erroneous packets received (`ierrors`).
    pub rx_errors: u64,
    /// Packets the driver failed to send (`oerrors`).
    pub tx_errors: u64,
    /// Receive mbuf allocation failures (`rx_nombuf`).
    pub rx_no_mbuf: u64,
}

impl Port {
    /// The port of a device by name (`net_null0`, `0000:03:00.0`, ...).
    pub fn by_name(_eal: &Eal, name: &str) -> Result<Port, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError {
            call: "rte_eth_dev_get_port_by_name",
            code: 22,
            text: "device name contains NUL".into(),
        })?;
        let mut id = 0u16;
        // SAFETY: valid C string and out pointer for the duration of the call.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        check("rte_eth_dev_get_port_by_name", rc)?;
        Ok(Port::new(id))
    }

    /// The port with this id (as EAL numbered the devices).
    pub fn by_id(_eal: &Eal, id: u16) -> Result<Port, DpdkError> {
        // SAFETY: only checks the id against EAL's device table.
        if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(DpdkError {
                call: "rte_eth_dev_is_valid_port",
                code: 19,
                text: format!("no DPDK port {id} (check the vdevs/devices in eal_args)"),
            });
        }
        Ok(Port::new(id))
    }

    fn new(id: u16) -> Port {
        Port {
            id,
            started: false,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// The DPDK port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Configures `queues` rx and tx queue pairs with `descriptors` each,
    /// receiving into `pool`, and starts the port.
    pub fn start(
        &mut self,
        queues: u16,
        descriptors: u16,
        pool: &Mempool,
    ) -> Result<(), DpdkError> {
        let conf = sys::rte_eth_conf::default();
        // SAFETY: the port id is valid (by_name); conf lives across the call.
        check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(self.id, queues, queues, &conf)
        })?;
        // SAFETY: reads the port's NUMA socket.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id) };
        // -1 (unknown) becomes SOCKET_ID_ANY, as the C API spells it.
        let socket = u32::try_from(socket).unwrap_or(u32::MAX);
        for q in 0..queues {
            // SAFETY: queue index below the configured count; NULL conf means
            // the driver's defaults; the pool outlives the started port.
            check("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    descriptors,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            })?;
            // SAFETY: as above.
            check("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(self.id, q, descriptors, socket, std::ptr::null())
            })?;
        }
        // SAFETY: configured above.
        check("rte_eth_dev_start", unsafe {
            sys::rte_eth_dev_start(self.id)
        })?;
        self.started = true;
        Ok(())
    }

    /// Turns promiscuous mode on or off (`rte_eth_promiscuous_enable` / `_disable`); an error names
    /// `rte_eth_promiscuous_enable` either way.
    pub fn set_promiscuous(&self, on: bool) -> Result<(), DpdkError> {
        // SAFETY: valid port id.
        let rc = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(self.id)
            } else {
                sys::rte_eth_promiscuous_disable(self.id)
            }
        };
        check("rte_eth_promiscuous_enable", rc).map(drop)
    }

    /// The port's MAC address (`rte_eth_macaddr_get`).
    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: valid port id and out pointer.
        check("rte_eth_macaddr_get", unsafe {
            sys::rte_eth_macaddr_get(self.id, &mut mac)
        })?;
        Ok(mac.addr_bytes)
    }

    /// Sets the port's MAC address (`rte_eth_dev_default_mac_addr_set`):
    /// the exception port takes the public port's, so the kernel's frames
    /// leave with it.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut addr = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port id and a pointer to an initialised address.
        check("rte_eth_dev_default_mac_addr_set", unsafe {
            sys::rte_eth_dev_default_mac_addr_set(self.id, &mut addr)
        })
        .map(drop)
    }

    /// The link state now, without waiting for autonegotiation (`rte_eth_link_get_nowait`).
    pub fn link(&self) -> Result<Link, DpdkError> {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port id and out pointer; does not wait.
        check("rte_eth_link_get_nowait", unsafe {
            sys::rte_eth_link_get_nowait(self.id, &mut link)
        })?;
        Ok(Link {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
        })
    }

    /// The driver's cumulative counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer.
        check("rte_eth_stats_get", unsafe {
            sys::rte_eth_stats_get(self.id, &mut s)
        })?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
        })
    }

    /// Receives up to the free room of `into` from `queue`; how many arrived.
    /// Only one lcore may poll a given queue.
    pub fn rx_burst(&self, queue: u16, into: &mut Burst) -> usize {
        let room = BURST - into.len;
        let Some(tail) = into.ptrs.get_mut(into.len..) else {
            return 0;
        };
        // SAFETY: `tail` has `room` writable slots; received mbufs become
        // owned by the Burst.
        let n = unsafe {
            sys::sbc_rx_burst(
                self.id,
                queue,
                tail.as_mut_ptr(),
                u16::try_from(room).unwrap_or(0),
            )
        };
        into.len += usize::from(n);
        usize::from(n)
    }

    /// Sends what the driver takes from the front of `burst`; the rest stays
    /// (send again or drop). How many went.
    pub fn tx_burst(&self, queue: u16, burst: &mut Burst) -> usize {
        if burst.is_empty() {
            return 0;
        }
        // SAFETY: the first `len` pointers are mbufs we own; the driver takes
        // ownership of the first `sent`.
        let sent = usize::from(unsafe {
            sys::sbc_tx_burst(
                self.id,
                queue,
                burst.ptrs.as_mut_ptr(),
                u16::try_from(burst.len).unwrap_or(0),
            )
        });
        burst.consumed(sent);
        sent
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: the port was started by us and is no longer polled (the
            // owner stops its lcores first). Closing releases its queues, so
            // nothing keeps pointing at the mempool they received into.
            unsafe {
                sys::rte_eth_dev_stop(self.id);
                sys::rte_eth_dev_close(self.id);
            }
        }
    }
}
