//! SIP over TCP and TLS on the public side (RFC 3261 §18): the listeners
//! (`[sip] public_tcp`, `public_tls`), a pool of connections keyed by
//! (transport, peer address), outbound connections opened on demand, and
//! the framing between them and the engine.
//!
//! ```text
//!  gateway ──TLS/TCP──► reader task: Framer ─► Dataplane::inject ─► engine
//!  engine ─► stream ring ─► sender task ─► pool[(transport, dst)] ─► writer task ─► gateway
//!                                 └─ none: connect (from our public address) and keep it
//! ```
//! The engine answers a request to the address it came from, which is the
//! connection's peer (RFC 3261 §18.2.2), and sends a leg's requests to the
//! connection the peer last used or to the gateway's address: the pool
//! finds the connection, whoever opened it (connection reuse, RFC 5923).
//! A connection idle for `sip.stream_idle_timeout_s` closes; a stream that
//! breaks the framing closes and is counted. UDP never comes here: it
//! stays in the backends (and on the DPDK fast path).

pub mod framing;
pub mod tls;

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sbc_dataplane::backend::Dataplane;
use sbc_dataplane::{Outgoing, Side, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Notify};

use framing::{Frame, Framer, Limits, PONG};
use tls::Tls;

/// Messages queued toward one connection before more are dropped.
const PER_CONNECTION: usize = 256;
/// How long a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the stream layer.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Our TCP listener (`sip.public_tcp`).
    pub tcp: Option<SocketAddrV4>,
    /// Our TLS listener (`sip.public_tls`).
    pub tls: Option<SocketAddrV4>,
    /// Our public address: outbound connections are opened from it.
    pub public: SocketAddrV4,
    /// A connection with nothing read for this long is closed.
    pub idle: Duration,
    /// Framing limits.
    pub limits: Limits,
}

/// The stream layer's counters (`/api/v1/status` `streams`, `/metrics`
/// `sbc_sip_stream_*`).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Connections accepted on our listeners.
    pub accepted: AtomicU64,
    /// Connections we opened toward gateways.
    pub connected: AtomicU64,
    /// Connects (TCP or the TLS handshake) that failed, ours or theirs.
    pub failed: AtomicU64,
    /// Connections closed because the stream broke the framing or limits.
    pub framing_errors: AtomicU64,
    /// Connections closed for being idle.
    pub idle_closed: AtomicU64,
    /// SIP messages read and handed to the engine.
    pub messages_in: AtomicU64,
    /// SIP messages written.
    pub messages_out: AtomicU64,
    /// Messages dropped: no connection could be had, its queue was full,
    /// or the engine's ring was.
    pub dropped: AtomicU64,
    /// Keep-alive pings answered.
    pub pongs: AtomicU64,
    /// Connections open now.
    pub open: AtomicI64,
}

impl StreamStats {
    /// The counters with their API names; `open` is a gauge.
    pub fn counters(&self) -> [(&'static str, u64); 10] {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("accepted", l(&self.accepted)),
            ("connected", l(&self.connected)),
            ("failed", l(&self.failed)),
            ("framing_errors", l(&self.framing_errors)),
            ("idle_closed", l(&self.idle_closed)),
            ("messages_in", l(&self.messages_in)),
            ("messages_out", l(&self.messages_out)),
            ("dropped", l(&self.dropped)),
            ("pongs", l(&self.pongs)),
            ("open", self.open.load(Ordering::Relaxed).max(0) as u64),
        ]
    }
}

/// Looks up the TLS name of a gateway address (its host name, or its IP
/// when it is provisioned as one); `None` for an address no gateway has.
pub type Names = Arc<dyn Fn(SocketAddr) -> Option<String> + Send + Sync>;

type Key = (Transport, SocketAddr);

#[derive(Debug, Clone)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The running stream layer.
pub struct Streams {
    cfg: StreamConfig,
    dp: Arc<Dataplane>,
    tls: Option<Arc<Tls>>,
    names: Names,
    pool: Mutex<HashMap<Key, Conn>>,
    next_id: AtomicU64,
    /// The counters.
    pub stats: Arc<StreamStats>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Streams {
    /// Binds the listeners and starts the tasks (on the current tokio
    /// runtime). Errors name the `sip.public_tcp`/`sip.public_tls` key.
    pub async fn start(
        cfg: StreamConfig,
        dp: Arc<Dataplane>,
        tls: Option<Arc<Tls>>,
        names: Names,
    ) -> anyhow::Result<Arc<Streams>> {
        let streams = Arc::new(Streams {
            cfg: cfg.clone(),
            dp: dp.clone(),
            tls,
            names,
            pool: Mutex::default(),
            next_id: AtomicU64::new(1),
            stats: Arc::default(),
        });
        for (key, addr, transport) in [
            ("sip.public_tcp", cfg.tcp, Transport::Tcp),
            ("sip.public_tls", cfg.tls, Transport::Tls),
        ] {
            let Some(addr) = addr else { continue };
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("binding SIP over {transport} on {key} = {addr}: {e}")
            })?;
            tracing::info!(%addr, %transport, "SIP over {transport} listening");
            let s = streams.clone();
            tokio::spawn(async move { s.accept_loop(listener, transport).await });
        }
        // The engine thread wakes the sender after it queued output.
        let notify = Arc::new(Notify::new());
        let wake = notify.clone();
        dp.on_stream_output(Box::new(move || wake.notify_one()));
        let s = streams.clone();
        tokio::spawn(async move {
            loop {
                notify.notified().await;
                while let Some(o) = s.dp.take_stream_output() {
                    s.send(o);
                }
            }
        });
        Ok(streams)
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, transport: Transport) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a SIP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let s = self.clone();
            tokio::spawn(async move {
                match transport {
                    Transport::Tls => {
                        let Some(server) = s.tls.as_ref().and_then(|t| t.server()) else {
                            return;
                        };
                        let acceptor = tokio_rustls::TlsAcceptor::from(server);
                        match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => s.serve(stream, (transport, peer), None).await,
                            Ok(Err(e)) => s.failed(peer, transport, &e.to_string()),
                            Err(_) => s.failed(peer, transport, "TLS handshake timed out"),
                        }
                    }
                    _ => s.serve(tcp, (transport, peer), None).await,
                }
            });
        }
    }

    fn failed(&self, peer: SocketAddr, transport: Transport, why: &str) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, %transport, error = why, "SIP connection failed");
    }

    /// Sends one message of the engine's: on the pooled connection to its
    /// destination, else on a new one. With no connection to its
    /// destination open (one the peer opened and closed: its source port
    /// takes no connections), a new one goes where RFC 3261 sends the
    /// message ([`rfc3261_target`]) when that is an address of its own.
    fn send(self: &Arc<Self>, o: Outgoing) {
        let mut key = (o.transport, o.dst);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if !pool.contains_key(&key) {
            if let Some(dst) = rfc3261_target(&o.data, o.transport).filter(|d| *d != o.dst) {
                tracing::debug!(flow = %o.dst, %dst, transport = %o.transport, "no connection to the flow: to the message's target");
                key = (o.transport, dst);
            }
        }
        if let Some(c) = pool.get(&key) {
            match c.tx.try_send(o.data) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // Closed under us: open a new one below.
                Err(mpsc::error::TrySendError::Closed(data)) => {
                    pool.remove(&key);
                    return self.open(pool, key, data);
                }
            }
        }
        self.open(pool, key, o.data);
    }

    /// Opens a connection to `key` with `first` queued on it; what the
    /// engine sends meanwhile queues behind it.
    fn open(
        self: &Arc<Self>,
        mut pool: std::sync::MutexGuard<'_, HashMap<Key, Conn>>,
        key: Key,
        first: Vec<u8>,
    ) {
        let (tx, rx) = mpsc::channel(PER_CONNECTION);
        let _ = tx.try_send(first);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        pool.insert(key, Conn { id, tx });
        drop(pool);
        let s = self.clone();
        tokio::spawn(async move {
            let (transport, dst) = key;
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, s.connect(key)).await;
            match connected {
                Ok(Ok(Connected::Tcp(tcp))) => {
                    s.stats.connected.fetch_add(1, Ordering::Relaxed);
                    s.serve(tcp, key, Some((id, rx))).await;
                }
                Ok(Ok(Connected::Tls(tls))) => {
                    s.stats.connected.fetch_add(1, Ordering::Relaxed);
                    s.serve(*tls, key, Some((id, rx))).await;
                }
                Ok(Err(e)) => {
                    s.forget(key, id);
                    s.lost(rx.len());
                    s.failed(dst, transport, &e);
                    s.dp.transport_failed(transport, dst);
                }
                Err(_) => {
                    s.forget(key, id);
                    s.lost(rx.len());
                    s.failed(dst, transport, "connect timed out");
                    s.dp.transport_failed(transport, dst);
                }
            }
        });
    }

    fn lost(&self, n: usize) {
        self.stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    async fn connect(&self, (transport, dst): Key) -> Result<Connected, String> {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        // From our public address, whatever the routing table prefers.
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(*self.cfg.public.ip(), 0)))
            .map_err(|e| format!("binding {}: {e}", self.cfg.public.ip()))?;
        let tcp = socket.connect(dst).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        if transport != Transport::Tls {
            return Ok(Connected::Tcp(tcp));
        }
        let tls = self.tls.as_ref().ok_or("no [tls] settings")?;
        let host = (self.names)(dst).unwrap_or_else(|| dst.ip().to_string());
        let name = tls::server_name(&host).ok_or_else(|| format!("{host} is no TLS name"))?;
        let connector = tokio_rustls::TlsConnector::from(tls.client());
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        Ok(Connected::Tls(Box::new(stream)))
    }

    fn forget(&self, key: Key, id: u64) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.get(&key).is_some_and(|c| c.id == id) {
            pool.remove(&key);
        }
    }

    /// Runs one connection until it closes: a writer for what is queued
    /// toward it, a reader that frames what arrives and hands it to the
    /// engine. `queued` is the queue of a connection we opened (already
    /// in the pool); an accepted one is pooled here under its peer.
    async fn serve<S>(
        self: Arc<Self>,
        stream: S,
        key: Key,
        queued: Option<(u64, mpsc::Receiver<Vec<u8>>)>,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (id, mut rx, tx) = match queued {
            Some((id, rx)) => {
                let tx = self
                    .pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .filter(|c| c.id == id)
                    .map(|c| c.tx.clone());
                let Some(tx) = tx else { return };
                (id, rx, tx)
            }
            None => {
                let (tx, rx) = mpsc::channel(PER_CONNECTION);
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                self.pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, Conn { id, tx: tx.clone() });
                (id, rx, tx)
            }
        };
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let (mut reader, mut writer) = tokio::io::split(stream);
        let stats = self.stats.clone();
        let write = tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if writer.write_all(&data).await.is_err() {
                    break;
                }
                if data != PONG {
                    stats.messages_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = writer.shutdown().await;
        });
        let (transport, peer) = key;
        let mut framer = Framer::new(self.cfg.limits);
        let mut buf = vec![0u8; 16 * 1024];
        'read: loop {
            let n = match tokio::time::timeout(self.cfg.idle, reader.read(&mut buf)).await {
                Err(_) => {
                    self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
            };
            framer.push(buf.get(..n).unwrap_or_default());
            loop {
                match framer.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Frame::Ping)) => {
                        self.stats.pongs.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.try_send(PONG.to_vec());
                    }
                    Ok(Some(Frame::Message(m))) => {
                        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        if !self.dp.inject(Side::Public, transport, peer, &m) {
                            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        self.stats.framing_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, %transport, error = %e, "closing a SIP connection that broke the framing");
                        break 'read;
                    }
                }
            }
        }
        self.forget(key, id);
        drop(tx);
        write.abort();
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where RFC 3261 sends `data` over a new connection of `transport`: a
/// request to its first Route (a loose router), else its Request-URI
/// (§8.1.2, §16.12); a response to its top Via's `received` address (else
/// its sent-by host) and sent-by port (§18.2.2). Only an IPv4 literal is an
/// answer here (names were resolved by the control plane when the gateway
/// was provisioned); the port defaults to the transport's (5061 for TLS).
fn rfc3261_target(data: &[u8], transport: Transport) -> Option<SocketAddr> {
    use sbc_dataplane::sip::grammar::{self, NameAddr, SipUri, Via};
    use sbc_dataplane::sip::{HeaderName, SipMessage, StartLine};
    let msg = SipMessage::parse(data).ok()?;
    let at = |host: &[u8], port: Option<u16>| {
        let ip = grammar::parse_ipv4(host)?;
        let port = port.unwrap_or(transport.default_port());
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    };
    match msg.start {
        StartLine::Request { uri, .. } => {
            let route = msg.values(HeaderName::Route).next();
            let target = route.map_or(uri, |r| NameAddr::parse(r).map_or(r, |na| na.uri));
            let u = SipUri::parse(target)?;
            at(u.host, u.port)
        }
        StartLine::Response { .. } => {
            let value = msg.values(HeaderName::Via).next()?;
            let via = Via::parse(value)?;
            let received = value
                .iter()
                .position(|&b| b == b';')
                .and_then(|i| grammar::param(value.get(i..)?, "received").flatten());
            at(received.unwrap_or(via.host), via.port)
        }
    }
}

enum Connected {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The TLS name of gateway address `addr` in `snap`: the host name of the
/// gateway's destination, or its IP literal.
pub fn tls_name(snap: &sbc_dataplane::RouteSnapshot, addr: SocketAddr) -> Option<String> {
    use sbc_dataplane::routing::{parse_destination, Destination};
    let SocketAddr::V4(addr) = addr else {
        return None;
    };
    let g = snap
        .gateways
        .iter()
        .find(|g| g.targets.iter().any(|t| t.addr == addr))?;
    match parse_destination(&g.destination).ok()?.0 {
        Destination::Name { host, .. } => Some(host),
        Destination::Literal(a) => Some(a.ip().to_string()),
    }
}
