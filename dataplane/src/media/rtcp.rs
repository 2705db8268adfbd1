//! RTCP read far enough for capture (RFC 3550 §6.4): which relayed packets
//! are RTCP, and the sender and receiver reports of a compound packet, the
//! fields Homer shows for a call's media quality (what rtpengine's and
//! captagent's `--homer` exports carry).
//!
//! ```text
//!  0                   1                   2                   3
//!  V=2|P|   RC   |  PT=SR=200 / RR=201  |  length (32-bit words - 1)
//!  SSRC of sender
//!  [SR only] NTP sec, NTP fraction, RTP timestamp, packets, octets
//!  RC x report block: SSRC_n, fraction lost (8) | cumulative lost (24,
//!                     signed), extended highest seq, jitter, LSR, DLSR
//! ```

/// Whether `pkt` is an RTCP packet rather than RTP: version 2 and a
/// packet type of 200..=207 (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR) in
/// the second byte, the test RFC 5761 §4 gives for RTP and RTCP on one port.
pub fn is_rtcp(pkt: &[u8]) -> bool {
    match pkt {
        [b0, pt, ..] if pkt.len() >= 8 => b0 >> 6 == 2 && (200..=207).contains(pt),
        _ => false,
    }
}

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp, seconds since 1900.
    pub ntp_sec: u32,
    /// NTP timestamp, fraction of a second in 1/2^32 units.
    pub ntp_frac: u32,
    /// The RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// The sender's packet count.
    pub packets: u32,
    /// The sender's payload octet count.
    pub octets: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source it is about (SSRC_n).
    pub source_ssrc: u32,
    /// Fraction lost since the last report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates make it negative).
    pub packets_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq_no: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub ia_jitter: u32,
    /// Last SR timestamp (middle 32 bits of its NTP time).
    pub lsr: u32,
    /// Delay since the last SR, in 1/65536 s.
    pub dlsr: u32,
}

/// The first SR or RR of a compound packet, with the SSRC of its SDES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// 200 (SR) or 201 (RR).
    pub packet_type: u8,
    /// SSRC of the sender of the report.
    pub ssrc: u32,
    /// Present for an SR.
    pub sender: Option<SenderInfo>,
    /// Its reception report blocks (as many as fit in its length).
    pub blocks: Vec<ReportBlock>,
    /// The first SSRC/CSRC chunk of an SDES in the same compound, if any.
    pub sdes_ssrc: Option<u32>,
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at + 4)?;
    Some(u32::from_be_bytes(w.try_into().ok()?))
}

/// Reads the first SR or RR of the compound packet `pkt` and the SSRC of
/// an SDES that comes with it. `None` when there is no SR or RR, or a
/// length runs past the end (the packets before that still count).
pub fn report(pkt: &[u8]) -> Option<Report> {
    let mut at = 0;
    let mut found: Option<Report> = None;
    let mut sdes = None;
    while let Some(&[b0, pt, l0, l1]) = pkt.get(at..at + 4) {
        if !pkt.get(at..).is_some_and(is_rtcp) {
            break;
        }
        let count = usize::from(b0 & 0x1f);
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let Some(body) = pkt.get(at..at + len) else {
            break;
        };
        match pt {
            200 | 201 if found.is_none() => {
                let sender = (pt == 200)
                    .then(|| {
                        Some(SenderInfo {
                            ntp_sec: word(body, 8)?,
                            ntp_frac: word(body, 12)?,
                            rtp_timestamp: word(body, 16)?,
                            packets: word(body, 20)?,
                            octets: word(body, 24)?,
                        })
                    })
                    .flatten();
                let first = if pt == 200 { 28 } else { 8 };
                let blocks = (0..count)
                    .map_while(|i| {
                        let b = first + 24 * i;
                        let lost = word(body, b + 4)?;
                        // 24-bit two's complement.
                        let cumulative = ((lost << 8) as i32) >> 8;
                        Some(ReportBlock {
                            source_ssrc: word(body, b)?,
                            fraction_lost: (lost >> 24) as u8,
                            packets_lost: cumulative,
                            highest_seq_no: word(body, b + 8)?,
                            ia_jitter: word(body, b + 12)?,
                            lsr: word(body, b + 16)?,
                            dlsr: word(body, b + 20)?,
                        })
                    })
                    .collect();
                if pt == 200 && sender.is_none() {
                    break;
                }
                found = Some(Report {
                    packet_type: pt,
                    ssrc: word(body, 4)?,
                    sender,
                    blocks,
                    sdes_ssrc: None,
                });
            }
            202 if count > 0 && sdes.is_none() => sdes = word(body, 4),
            _ => {}
        }
        at += len;
    }
    found.map(|r| Report {
        sdes_ssrc: sdes,
        ..r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SR with one report block, then an SDES with a CNAME.
    fn compound() -> Vec<u8> {
        let mut p = vec![0x81, 200, 0, 12];
        for w in [
            0x1111_1111u32,
            3_900_000_000,
            0x8000_0000,
            160_000,
            1_000,
            160_000,
            0x2222_2222,
        ] {
            p.extend_from_slice(&w.to_be_bytes());
        }
        // fraction 25/256, cumulative lost -3 (duplicates).
        p.extend_from_slice(&[25, 0xff, 0xff, 0xfd]);
        for w in [0x0001_0400u32, 37, 0x1234_5678, 65_536] {
            p.extend_from_slice(&w.to_be_bytes());
        }
        p.extend_from_slice(&[0x81, 202, 0, 3]);
        p.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        p.extend_from_slice(&[1, 3, b'a', b'@', b'b', 0, 0, 0]);
        p
    }

    #[test]
    fn a_sender_report_and_its_sdes_are_read() {
        let p = compound();
        assert!(is_rtcp(&p));
        let r = report(&p).unwrap();
        assert_eq!(r.packet_type, 200);
        assert_eq!(r.ssrc, 0x1111_1111);
        let s = r.sender.unwrap();
        assert_eq!((s.ntp_sec, s.ntp_frac), (3_900_000_000, 0x8000_0000));
        assert_eq!(
            (s.rtp_timestamp, s.packets, s.octets),
            (160_000, 1_000, 160_000)
        );
        assert_eq!(
            r.blocks,
            vec![ReportBlock {
                source_ssrc: 0x2222_2222,
                fraction_lost: 25,
                packets_lost: -3,
                highest_seq_no: 0x0001_0400,
                ia_jitter: 37,
                lsr: 0x1234_5678,
                dlsr: 65_536,
            }]
        );
        assert_eq!(r.sdes_ssrc, Some(0x1111_1111));
    }

    #[test]
    fn rtp_and_broken_packets_are_not_reports() {
        // RTP, PCMA (PT 8), and with the marker bit: 0x88 is not 200..=207.
        assert!(!is_rtcp(&[0x80, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_rtcp(&[0x80, 0x88, 0, 1, 0, 0, 0, 0]));
        assert!(!is_rtcp(&[0x81, 200, 0]));
        let p = compound();
        // A length past the end: nothing read.
        assert_eq!(report(&p[..20]), None);
        // A BYE alone has no report.
        assert_eq!(report(&[0x81, 203, 0, 1, 0, 0, 0, 1]), None);
        // An RR with no blocks.
        let rr = report(&[0x80, 201, 0, 1, 0, 0, 0, 9]).unwrap();
        assert_eq!((rr.packet_type, rr.ssrc, rr.sender), (201, 9, None));
        assert!(rr.blocks.is_empty());
    }
}
