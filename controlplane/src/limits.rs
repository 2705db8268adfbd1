//! Process limits the SBC needs: enough file descriptors for the socket
//! backend's media relay, which binds one UDP socket per relay port and side
//! in use (four per call with RTCP) and keeps up to 4,096 more bound between
//! calls. The default soft limit of 1,024 (systemd's, a login shell's) runs
//! out at about 250 calls; RTPEngine and Kamailio deployments raise it with
//! `LimitNOFILE=` or `ulimit -n` for the same reason.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors beyond the media relay's: SIP and API sockets, TCP/TLS SIP
/// connections, database and journal files.
const MARGIN: u64 = 4_096;

/// What [`raise_nofile`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the ceiling an unprivileged process may raise to).
    pub hard: u64,
    /// Descriptors the configuration may use: `media_sockets` + a margin.
    pub wanted: u64,
}

impl NofileLimit {
    /// Whether the soft limit covers what the configuration may use.
    pub fn enough(&self) -> bool {
        self.soft >= self.wanted
    }
}

/// Raises `RLIMIT_NOFILE`'s soft limit toward `media_sockets` + a margin of
/// 4,096, up to the hard limit (never lowers it), as the process starts.
///
/// `media_sockets`: sockets the media relay may bind (2 × the relay port
/// range on the socket backend, 0 on DPDK, whose relay uses no sockets).
///
/// # Errors
/// `getrlimit`/`setrlimit` failed (the limit stays as it was).
pub fn raise_nofile(media_sockets: u64) -> nix::Result<NofileLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let wanted = media_sockets.saturating_add(MARGIN);
    let target = wanted.min(hard);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    }
    Ok(NofileLimit {
        soft: target.max(soft),
        hard,
        wanted,
    })
}

/// The media lines the socket backend's relay can hold with `soft` open
/// files: four sockets a line (RTP and RTCP on each side), after the margin
/// and the idle sockets it keeps bound
/// ([`sbc_dataplane::backend::socket::KEEP_IDLE`]); at least an eighth of
/// `soft` (a quarter of it in sockets), so a small limit still carries calls.
pub fn socket_media_lines(soft: u64) -> u64 {
    let sockets = soft.saturating_sub(MARGIN + sbc_dataplane::backend::socket::KEEP_IDLE);
    (sockets / 4).max(soft / 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_toward_what_the_media_range_needs() {
        let (soft0, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let got = raise_nofile(20_000).unwrap();
        assert_eq!(got.hard, hard);
        assert_eq!(got.wanted, 24_096);
        assert_eq!(got.soft, 24_096.min(hard).max(soft0));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, got.soft);
        assert_eq!(got.enough(), hard >= 24_096 || soft0 >= 24_096);
        // Never lowered.
        let again = raise_nofile(0).unwrap();
        assert_eq!(again.soft, got.soft);
    }

    #[test]
    fn the_socket_relay_holds_four_sockets_a_line_after_the_margins() {
        // The sandbox's hard limit; a login shell's; a systemd unit's LimitNOFILE=1048576.
        assert_eq!(socket_media_lines(20_000), (20_000 - 8_192) / 4);
        assert_eq!(socket_media_lines(1_024), 128);
        assert_eq!(socket_media_lines(1_048_576), (1_048_576 - 8_192) / 4);
    }
}
