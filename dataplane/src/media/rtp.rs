//! RTP as the relay sees it: a checked view of the fixed header
//! (RFC 3550 section 5.1) and per-direction receive statistics (RFC 3550
//! appendix A.1 sequence tracking, A.8 interarrival jitter).
//!
//! The relay never looks past the fixed header, so any codec and RFC 4733
//! telephone events pass through untouched. `perf/` generates and reads
//! its load with the same view.

use crate::call::RtpSummary;

/// Byte ranges of the RTP fixed header (RFC 3550 section 5.1).
pub mod field {
    use std::ops::Range;

    /// V (2 bits), P, X, CC (4 bits).
    pub const VPXCC: usize = 0;
    /// M (1 bit), PT (7 bits).
    pub const MPT: usize = 1;
    /// Sequence number: 16 bits, network byte order.
    pub const SEQ: Range<usize> = 2..4;
    /// Timestamp: 32 bits, network byte order, in the payload format's clock units.
    pub const TIMESTAMP: Range<usize> = 4..8;
    /// SSRC (synchronization source identifier): 32 bits, network byte order.
    pub const SSRC: Range<usize> = 8..12;
}

/// Length of the RTP fixed header.
pub const HEADER_LEN: usize = 12;

/// A view over the bytes of an RTP packet: `new_checked` validates the
/// length and version once, after which the accessors never panic.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    /// The packet, if it is at least a fixed header long and says version 2.
    pub fn new_checked(buffer: T) -> Option<RtpPacket<T>> {
        let b = buffer.as_ref();
        (b.len() >= HEADER_LEN && b.first().is_some_and(|v| v >> 6 == 2))
            .then_some(RtpPacket { buffer })
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        self.buffer
            .as_ref()
            .get(r)
            .and_then(|s| <[u8; 2]>::try_from(s).ok())
            .map_or(0, u16::from_be_bytes)
    }

    fn u32_at(&self, r: std::ops::Range<usize>) -> u32 {
        self.buffer
            .as_ref()
            .get(r)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map_or(0, u32::from_be_bytes)
    }

    /// The marker bit (a talkspurt's or telephone event's start).
    pub fn marker(&self) -> bool {
        self.buffer
            .as_ref()
            .get(field::MPT)
            .is_some_and(|b| b & 0x80 != 0)
    }

    /// The payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref().get(field::MPT).map_or(0, |b| b & 0x7f)
    }

    /// The sequence number (RFC 3550 §5.1), in host order.
    pub fn sequence_number(&self) -> u16 {
        self.u16_at(field::SEQ)
    }

    /// The timestamp (RFC 3550 §5.1), in the payload format's clock units.
    pub fn timestamp(&self) -> u32 {
        self.u32_at(field::TIMESTAMP)
    }

    /// The synchronization source identifier (RFC 3550 §5.1).
    pub fn ssrc(&self) -> u32 {
        self.u32_at(field::SSRC)
    }

    /// Bytes after the fixed header (CSRCs and extensions included).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtpPacket<T> {
    /// Writes a version 2 fixed header without CSRCs into `buffer`
    /// (`None` when it is shorter than [`HEADER_LEN`]).
    pub fn emit(
        mut buffer: T,
        payload_type: u8,
        seq: u16,
        timestamp: u32,
        ssrc: u32,
    ) -> Option<RtpPacket<T>> {
        let b = buffer.as_mut().get_mut(..HEADER_LEN)?;
        let [v, m, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = b else {
            return None;
        };
        *v = 0x80;
        *m = payload_type & 0x7f;
        [*s0, *s1] = seq.to_be_bytes();
        [*t0, *t1, *t2, *t3] = timestamp.to_be_bytes();
        [*c0, *c1, *c2, *c3] = ssrc.to_be_bytes();
        Some(RtpPacket { buffer })
    }
}

/// Per-direction RTP statistics (RFC 3550 appendix A.1 and A.8).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtpStats {
    /// Datagrams accepted in this direction, RTP version 2 or not (only version 2 feeds the
    /// sequence and jitter figures).
    pub packets: u64,
    /// Their bytes: the UDP payload, RTP header included.
    pub bytes: u64,
    /// Highest sequence number seen, extended with wrap-arounds.
    pub max_seq: u32,
    /// First sequence number of the current SSRC (RFC 3550 A.1 `base_seq`).
    pub base_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: f64,
    /// Transit time of the previous packet of the current source (valid
    /// from its second packet on).
    last_transit: i32,
    started: bool,
    ssrc: u32,
    /// RTP packets of the current source (loss counts against these).
    since_restart: u32,
    /// Loss of earlier sources (an SSRC change restarts the sequence).
    lost_before: u64,
    /// RFC 4733 telephone events seen (the relay counts them where the
    /// SDP names the payload type).
    pub dtmf_events: u32,
    /// The timestamp of the latest of them (one event's packets share it).
    pub(crate) last_event: u32,
}

impl RtpStats {
    /// Packets expected from the sequence numbers minus packets received.
    pub fn lost(&self) -> u64 {
        if !self.started {
            return 0;
        }
        let expected = u64::from(self.max_seq - self.base_seq) + 1;
        self.lost_before + expected.saturating_sub(u64::from(self.since_restart))
    }

    /// The figures a call record keeps.
    pub fn summary(&self) -> RtpSummary {
        RtpSummary {
            packets: self.packets,
            bytes: self.bytes,
            lost: self.lost(),
            jitter_ms: self.jitter / 8.0,
            dtmf_events: u64::from(self.dtmf_events),
        }
    }

    /// Accounts one RTP packet received at `arrival` (in the stream's clock units).
    pub(crate) fn update(&mut self, pkt: &[u8], arrival: i64) {
        self.packets += 1;
        self.bytes += pkt.len() as u64;
        // Only RTP version 2 headers feed the statistics.
        let Some(rtp) = RtpPacket::new_checked(pkt) else {
            return;
        };
        let (seq, ts, ssrc) = (rtp.sequence_number(), rtp.timestamp(), rtp.ssrc());
        if self.started && ssrc != self.ssrc {
            // A new source (early media then the answer, a re-INVITE): its
            // sequence and clock start afresh; earlier loss is kept.
            self.lost_before = self.lost();
            self.started = false;
        }
        if !self.started {
            self.ssrc = ssrc;
            self.since_restart = 0;
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = u32::from(seq);
        } else {
            let cycles = self.max_seq & !0xffff;
            let last = (self.max_seq & 0xffff) as u16;
            let delta = seq.wrapping_sub(last);
            if delta < 0x8000 {
                // In order (possibly with a gap); a smaller value means a wrap.
                let wrapped = if seq < last {
                    cycles + 0x1_0000
                } else {
                    cycles
                };
                self.max_seq = wrapped | u32::from(seq);
            }
        }
        self.since_restart = self.since_restart.saturating_add(1);
        // RFC 3550 A.8 in 32-bit wrapping arithmetic, so a timestamp wrap
        // does not look like a jump.
        let transit = (arrival as u32).wrapping_sub(ts) as i32;
        if self.since_restart > 1 {
            let d = f64::from(transit.wrapping_sub(self.last_transit).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = transit;
    }
}

/// One DTMF digit as RFC 4733 telephone-event packets of ours (a digit
/// that came in a SIP INFO, injected toward a gateway that takes RFC 4733
/// only), in our own RTP source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The payload type the receiver negotiated for `telephone-event/8000`.
    pub pt: u8,
    /// Our synchronization source for injected events.
    pub ssrc: u32,
    /// The first packet's sequence number; the others follow it.
    pub seq: u16,
    /// The event's timestamp (8 kHz), the same in all its packets.
    pub timestamp: u32,
    /// The event code: 0-9 the digits, 10 `*`, 11 `#`, 12-15 A-D, 16 flash.
    pub event: u8,
    /// The duration in timestamp units (8 per ms).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Number of packets [`TelephoneEvent::packets`] gives.
    pub const PACKETS: usize = 4;

    /// The event's packets, sent in one go: the first with the marker bit
    /// and the whole duration, then the end packet three times (RFC 4733
    /// sections 2.3 and 2.5.1.4), sequence numbers `seq` onward. Volume 10
    /// (-10 dBm0).
    pub fn packets(&self) -> [[u8; HEADER_LEN + 4]; Self::PACKETS] {
        std::array::from_fn(|i| {
            let seq = self.seq.wrapping_add(i as u16);
            let first = i == 0;
            let [s0, s1] = seq.to_be_bytes();
            let [t0, t1, t2, t3] = self.timestamp.to_be_bytes();
            let [c0, c1, c2, c3] = self.ssrc.to_be_bytes();
            let [d0, d1] = self.duration.to_be_bytes();
            let marker = if first { 0x80 } else { 0 };
            let end = if first { 0 } else { 0x80 };
            [
                0x80,
                marker | (self.pt & 0x7f),
                s0,
                s1,
                t0,
                t1,
                t2,
                t3,
                c0,
                c1,
                c2,
                c3,
                self.event,
                end | 10,
                d0,
                d1,
            ]
        })
    }

    /// The event code of a DTMF digit as SIP INFO names it (`0`-`9`, `*`,
    /// `#`, `A`-`D`, case-insensitive, or `10`-`16` written as numbers);
    /// `None` for anything else.
    pub fn code(digit: &str) -> Option<u8> {
        let d = digit.trim();
        match d.as_bytes() {
            [c @ b'0'..=b'9'] => Some(c - b'0'),
            [b'*'] => Some(10),
            [b'#'] => Some(11),
            [c @ (b'A'..=b'D' | b'a'..=b'd')] => Some(c.to_ascii_uppercase() - b'A' + 12),
            _ => d.parse::<u8>().ok().filter(|n| (10..=16).contains(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_emit_the_fixed_header() {
        let bytes = [
            0x80, 0x88, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef, 0xd5,
        ];
        let p = RtpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 320);
        assert_eq!(p.ssrc(), 0xdead_beef);
        assert_eq!(p.payload(), [0xd5]);
        let mut out = [0u8; 13];
        out[12] = 0xd5;
        RtpPacket::emit(&mut out[..], 8, 0x1234, 320, 0xdead_beef).unwrap();
        out[1] |= 0x80;
        assert_eq!(out, bytes);
        assert!(RtpPacket::new_checked(&bytes[..11]).is_none(), "short");
        assert!(
            RtpPacket::new_checked(&[0x40; 12][..]).is_none(),
            "version 1"
        );
    }

    #[test]
    fn telephone_events_carry_marker_end_and_duration() {
        let e = TelephoneEvent {
            pt: 101,
            ssrc: 0x0102_0304,
            seq: 65535,
            timestamp: 8000,
            event: TelephoneEvent::code("#").unwrap(),
            duration: 1280,
        };
        let p = e.packets();
        assert_eq!(p[0][..2], [0x80, 0x80 | 101]);
        assert_eq!(p[0][12..], [11, 10, 0x05, 0x00]);
        assert_eq!(p[1][1], 101, "marker only on the first");
        assert_eq!(p[1][2..4], [0, 0], "sequence wraps");
        for q in &p[1..] {
            assert_eq!(q[13], 0x80 | 10, "end bit");
            assert_eq!(q[4..8], p[0][4..8], "one timestamp");
        }
        assert_eq!(TelephoneEvent::code("5"), Some(5));
        assert_eq!(TelephoneEvent::code("*"), Some(10));
        assert_eq!(TelephoneEvent::code("d"), Some(15));
        assert_eq!(TelephoneEvent::code("16"), Some(16));
        assert_eq!(TelephoneEvent::code("x"), None);
    }
}
