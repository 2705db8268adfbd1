//! What the data plane gets from the configuration: the SIP engine's
//! settings and each backend's, built here so that `run.rs` only starts
//! things (capsule's `to_eal_args` style).

use sbc_dataplane::backend::socket::SocketConfig;
use sbc_dataplane::engine::{MediaSettings, Policy};
use sbc_dataplane::{BySide, EngineConfig, Side};

#[cfg(feature = "dpdk")]
use super::ConfigError;
use super::{Config, RoutingConfig, UnknownSource};

/// Capacity of the rings between the I/O threads and the SIP engine.
pub const RING_SIZE: usize = 4096;

impl RoutingConfig {
    /// The engine's routing policy from these settings.
    pub fn policy(&self) -> Policy {
        Policy {
            failover_codes: self.failover_codes.clone(),
            failover_timeout: self.failover_timeout_ms,
            limit_code: self.limit_code,
            retry_after_s: self.retry_after_s,
            drop_unknown_sources: self.unknown_source == UnknownSource::Drop,
            cluster_ask_ms: None,
        }
    }
}

impl Config {
    /// The stream layer's settings (`[sip] public_tcp`, `public_tls`,
    /// `stream_idle_timeout_s`, `stream_max_message`).
    pub fn stream_config(&self) -> crate::stream::StreamConfig {
        crate::stream::StreamConfig {
            tcp: self.sip.public_tcp,
            tls: self.sip.public_tls,
            public: self.sip.public,
            idle: std::time::Duration::from_secs(self.sip.stream_idle_timeout_s),
            limits: crate::stream::framing::Limits {
                max_message: self.sip.stream_max_message,
                ..Default::default()
            },
        }
    }

    /// The SIP engine's settings: our SIP addresses, T1 (and T2 = 8 × T1),
    /// the media relay and the routing policy; `seed` seeds the branches,
    /// tags and Call-IDs. What the config leaves out is the data plane's
    /// default.
    pub fn engine_config(&self, seed: u64) -> EngineConfig {
        let mut engine = EngineConfig::new(self.sip.private, self.sip.public);
        engine.t1 = self.sip.t1_ms;
        engine.t2 = 8 * self.sip.t1_ms;
        engine.seed = seed;
        engine.media = Some(self.media_settings());
        engine.policy = self.routing.policy();
        if self.cluster.redis.is_some() {
            engine.policy.cluster_ask_ms = Some(self.cluster.ask_timeout_ms);
        }
        engine.strip_isup = self.sip.strip_isup;
        engine.tcp[Side::Public] = self.sip.public_tcp;
        engine.tls[Side::Public] = self.sip.public_tls;
        engine.offer_codecs = self.routing.offer_codecs.clone();
        engine.health = self.health.health_config();
        engine.srtp = self.dataplane.backend.srtp();
        engine.guard = sbc_dataplane::guard::GuardConfig {
            max_message: self.sip.max_message,
            window_ms: self.flood.window_s * 1000,
            limit: self.flood.requests,
            ban_ms: self.flood.ban_s * 1000,
            scanners: self
                .flood
                .scanners
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            max_sources: self.flood.max_sources,
            drop_untrusted_private: engine.policy.drop_unknown_sources,
        };
        engine
    }

    /// The media relay's addresses (default: the SIP addresses) and port
    /// ranges. When both sides share one address, each side gets half of the
    /// range.
    pub fn media_settings(&self) -> MediaSettings {
        let private_ip = self.media.private_ip.unwrap_or(*self.sip.private.ip());
        let public_ip = self.media.public_ip.unwrap_or(*self.sip.public.ip());
        let (min, max) = (self.media.port_min, self.media.port_max);
        let (private_ports, public_ports) = if private_ip == public_ip {
            let mid = min + (max - min) / 2;
            ((min, mid), (mid, max))
        } else {
            ((min, max), (min, max))
        };
        MediaSettings {
            ip: BySide::new(private_ip, public_ip),
            ports: BySide::new(private_ports, public_ports),
            timeout: self.media.timeout_s * 1000,
            hold_timeout: (self.media.hold_timeout_s > 0).then(|| self.media.hold_timeout_s * 1000),
            max_sessions: self.media.max_sessions,
        }
    }

    /// The socket backend's settings around `engine` (see
    /// [`Config::engine_config`]).
    pub fn socket_config(&self, engine: EngineConfig) -> SocketConfig {
        SocketConfig {
            engine,
            sip_core: self.sip.engine_core,
            ring_size: self.dataplane.ring_size,
        }
    }

    /// The DPDK backend's settings around `engine`, from `[dataplane.dpdk]`;
    /// [`ConfigError::Missing`] when that section is absent.
    #[cfg(feature = "dpdk")]
    pub fn dpdk_config(
        &self,
        engine: EngineConfig,
    ) -> Result<sbc_dataplane::backend::dpdk::DpdkConfig, ConfigError> {
        let d = self.dataplane.dpdk.as_ref().ok_or(ConfigError::Missing {
            key: "dataplane.dpdk",
            why: "when backend = \"dpdk\"",
        })?;
        Ok(sbc_dataplane::backend::dpdk::DpdkConfig {
            eal_args: d.eal_args.clone(),
            ports: BySide::new(d.private_port, d.public_port),
            prefixes: BySide::new(d.private_prefix, d.public_prefix),
            next_hops: BySide::new(d.private_next_hop, d.public_next_hop),
            idle_sleep_us: d.idle_sleep_us,
            exception_iface: d.exception_iface.clone(),
            engine,
            sip_core: self.sip.engine_core,
            ring_size: self.dataplane.ring_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::tests::FULL;

    const MINIMAL: &str = r#"
[sip]
private = "10.0.0.100:5060"
public  = "203.0.113.50:5080"
"#;

    #[test]
    fn a_minimal_config_gets_the_data_plane_defaults() {
        let c = Config::parse(MINIMAL, "t.toml").unwrap();
        let got = c.engine_config(7);
        let mut want = EngineConfig::new(c.sip.private, c.sip.public);
        want.seed = 7;
        want.media = got.media;
        // Every field, the policy's included (neither type is PartialEq).
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert_eq!(c.routing.unknown_source, UnknownSource::Reject);
    }

    #[test]
    fn the_engine_config_carries_every_setting() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        let e = c.engine_config(1);
        assert_eq!((e.t1, e.t2), (500, 4000));
        assert_eq!(e.policy.failover_codes, [408, 500, 503]);
        assert_eq!(e.policy.failover_timeout, 3000);
        assert_eq!((e.policy.limit_code, e.policy.retry_after_s), (486, 2));
        assert!(e.policy.drop_unknown_sources);
        let m = e.media.unwrap();
        assert_eq!(
            m.ip[sbc_dataplane::Side::Public],
            Ipv4Addr::new(203, 0, 113, 50)
        );
        assert_eq!(m.ports[sbc_dataplane::Side::Private], (10_000, 60_000));
        assert_eq!(m.timeout, 60_000);
        let t1 = Config::parse(&MINIMAL.replace("5080\"", "5080\"\nt1_ms = 100"), "t.toml")
            .unwrap()
            .engine_config(1);
        assert_eq!((t1.t1, t1.t2), (100, 800));
    }

    #[test]
    fn max_sessions_reaches_the_engine_and_zero_names_its_key() {
        let c =
            Config::parse(&format!("{MINIMAL}[media]\nmax_sessions = 500\n"), "t.toml").unwrap();
        assert_eq!(c.media_settings().max_sessions, Some(500));
        assert_eq!(
            Config::parse(MINIMAL, "t.toml")
                .unwrap()
                .media_settings()
                .max_sessions,
            None
        );
        let e =
            Config::parse(&format!("{MINIMAL}[media]\nmax_sessions = 0\n"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("media.max_sessions"), "{e}");
    }

    #[test]
    fn cluster_redis_turns_on_the_engines_ask_and_bad_cluster_keys_are_named() {
        let c = Config::parse(
            &format!("{MINIMAL}[cluster]\nnode_id = \"sbc-1\"\nredis = \"redis://10.0.9.1:6379\"\nask_timeout_ms = 150\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.engine_config(1).policy.cluster_ask_ms, Some(150));
        assert_eq!(c.cluster.lease_s, 10);
        let alone = Config::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(alone.engine_config(1).policy.cluster_ask_ms, None);
        assert!(!alone.cluster.node_id.is_empty());
        for (table, key) in [
            ("node_id = \"a b\"", "cluster.node_id"),
            ("node_id = \"\"", "cluster.node_id"),
            ("redis = \"http://x\"", "cluster.redis"),
            ("redis = \"rediss://x\"", "cluster.redis"),
            ("lease_s = 0", "cluster.lease_s"),
            ("ask_timeout_ms = 0", "cluster.ask_timeout_ms"),
            ("ask_timeout_ms = 6000", "cluster.ask_timeout_ms"),
        ] {
            let e = Config::parse(&format!("{MINIMAL}[cluster]\n{table}\n"), "t.toml").unwrap_err();
            assert!(e.to_string().contains(key), "{table}: {e}");
        }
    }

    #[test]
    fn one_media_address_splits_the_port_range() {
        let c = Config::parse(
            &format!("{MINIMAL}[media]\nprivate_ip = \"10.0.0.1\"\npublic_ip = \"10.0.0.1\"\n"),
            "t.toml",
        )
        .unwrap();
        let m = c.media_settings();
        assert_eq!(m.ports[sbc_dataplane::Side::Private], (10_000, 35_000));
        assert_eq!(m.ports[sbc_dataplane::Side::Public], (35_000, 60_000));
    }

    #[cfg(feature = "dpdk")]
    #[test]
    fn the_dpdk_config_takes_each_side_from_its_keys() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        let d = c.dpdk_config(c.engine_config(1)).unwrap();
        assert_eq!(d.eal_args.len(), 7);
        assert_eq!(d.ports[sbc_dataplane::Side::Public], 1);
        assert_eq!(d.prefixes[sbc_dataplane::Side::Private], 16);
        assert_eq!(d.ring_size, RING_SIZE);
        let mut no_dpdk = c.clone();
        no_dpdk.dataplane.dpdk = None;
        let e = no_dpdk.dpdk_config(c.engine_config(1)).unwrap_err();
        assert!(e.to_string().contains("dataplane.dpdk"), "{e}");
    }
}
