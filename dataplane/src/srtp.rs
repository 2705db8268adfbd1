//! SRTP and SRTCP with libsrtp2 (Cisco's reference implementation of RFC
//! 3711, with RFC 7714's AES-GCM), through our bindgen bindings
//! (`srtp-sys`, feature `srtp`). One [`SrtpSession`] protects or
//! unprotects one direction of one media line, in place, without
//! allocating per packet (libsrtp allocates once per SSRC it meets).
//!
//! With `dpdk/`, the only `unsafe` of the data plane: each block says why
//! it holds.

use std::sync::Once;

use srtp_sys as sys;

use crate::media::sdes::Suite;

/// What a session does to the packets given to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// RTP/RTCP in, SRTP/SRTCP out (toward the party that holds the key's
    /// other end): any SSRC, repeats allowed (the relay passes a sender's
    /// duplicates on as it does for plain RTP).
    Protect,
    /// SRTP/SRTCP in, RTP/RTCP out, with replay protection (RFC 3711
    /// section 3.3.2, a 128-packet window).
    Unprotect,
}

/// Why a packet (or a session) failed; from libsrtp's `srtp_err_status_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The authentication tag did not verify (a forged or damaged packet,
    /// or the wrong key).
    #[error("SRTP authentication failed")]
    AuthFail,
    /// A packet seen already, or too old for the replay window.
    #[error("SRTP replay")]
    Replay,
    /// The buffer has no room for the tag, or the packet is too short.
    #[error("SRTP packet or buffer too short")]
    TooShort,
    /// The key is not the suite's length.
    #[error("SRTP key of the wrong length")]
    BadKey,
    /// Any other libsrtp status, by number.
    #[error("libsrtp error {0}")]
    Other(u32),
}

impl SrtpError {
    fn of(status: sys::srtp_err_status_t) -> Result<(), SrtpError> {
        #[allow(non_upper_case_globals)]
        match status {
            sys::srtp_err_status_t_srtp_err_status_ok => Ok(()),
            sys::srtp_err_status_t_srtp_err_status_auth_fail => Err(SrtpError::AuthFail),
            sys::srtp_err_status_t_srtp_err_status_replay_fail
            | sys::srtp_err_status_t_srtp_err_status_replay_old => Err(SrtpError::Replay),
            other => Err(SrtpError::Other(other)),
        }
    }
}

static INIT: Once = Once::new();
static mut INIT_STATUS: sys::srtp_err_status_t = 0;

fn init() -> Result<(), SrtpError> {
    INIT.call_once(|| {
        // SAFETY: srtp_init has no preconditions; Once runs it once, before
        // any session exists, and INIT_STATUS is written only here.
        unsafe { INIT_STATUS = sys::srtp_init() };
    });
    // SAFETY: written once inside call_once above, which has completed.
    SrtpError::of(unsafe { INIT_STATUS })
}

/// One direction of SRTP for one media line (RTP and its RTCP).
#[derive(Debug)]
pub struct SrtpSession {
    ctx: sys::srtp_t,
    suite: Suite,
}

// SAFETY: an srtp_t is a heap object owned by this value alone; libsrtp
// keeps no thread-local state for it, so it may move between threads (it is
// used from one thread at a time: `&mut self` on every call).
unsafe impl Send for SrtpSession {}

impl SrtpSession {
    /// A session for `suite` with master key and salt `key`
    /// ([`Suite::key_len`] bytes) that protects or unprotects (`role`)
    /// packets of any SSRC.
    pub fn new(suite: Suite, key: &[u8], role: Role) -> Result<SrtpSession, SrtpError> {
        if key.len() != suite.key_len() {
            return Err(SrtpError::BadKey);
        }
        init()?;
        let mut policy = sys::srtp_policy_t::default();
        // SAFETY: the setters only write the crypto policy structs given.
        unsafe {
            match suite {
                // libsrtp's defaults are AES_CM_128_HMAC_SHA1_80 (its
                // `..._aes_cm_128_hmac_sha1_80` setter is a macro for them).
                Suite::AesCm128HmacSha1_80 => {
                    sys::srtp_crypto_policy_set_rtp_default(&mut policy.rtp);
                    sys::srtp_crypto_policy_set_rtcp_default(&mut policy.rtcp);
                }
                Suite::AeadAes128Gcm => {
                    sys::srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut policy.rtp);
                    sys::srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut policy.rtcp);
                }
            }
        }
        policy.ssrc.type_ = match role {
            Role::Protect => sys::srtp_ssrc_type_t_ssrc_any_outbound,
            Role::Unprotect => sys::srtp_ssrc_type_t_ssrc_any_inbound,
        };
        policy.window_size = 128;
        policy.allow_repeat_tx = i32::from(role == Role::Protect);
        // libsrtp reads the key during srtp_create (it derives the session
        // keys there) and does not keep the pointer.
        let mut material = key.to_vec();
        policy.key = material.as_mut_ptr();
        let mut ctx: sys::srtp_t = std::ptr::null_mut();
        // SAFETY: `policy` is fully initialised (defaults, then the setters),
        // its key points at `material`, alive until after the call; `ctx` is
        // an out pointer.
        let status = unsafe { sys::srtp_create(&mut ctx, &policy) };
        material.fill(0);
        SrtpError::of(status)?;
        Ok(SrtpSession { ctx, suite })
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypts and authenticates the RTP packet `buf[..len]` in place;
    /// `buf` must have [`Suite::rtp_overhead`] bytes of room after it.
    /// Returns the SRTP packet's length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.run(buf, len, self.suite.rtp_overhead(), sys::srtp_protect)
    }

    /// Checks and decrypts the SRTP packet `buf[..len]` in place; returns
    /// the RTP packet's length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.run(buf, len, 0, sys::srtp_unprotect)
    }

    /// Encrypts and authenticates the RTCP compound packet `buf[..len]` in
    /// place; `buf` must have [`Suite::rtcp_overhead`] bytes of room after it.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.run(buf, len, self.suite.rtcp_overhead(), sys::srtp_protect_rtcp)
    }

    /// Checks and decrypts the SRTCP packet `buf[..len]` in place.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.run(buf, len, 0, sys::srtp_unprotect_rtcp)
    }

    fn run(
        &mut self,
        buf: &mut [u8],
        len: usize,
        room: usize,
        op: unsafe extern "C" fn(
            sys::srtp_t,
            *mut core::ffi::c_void,
            *mut core::ffi::c_int,
        ) -> sys::srtp_err_status_t,
    ) -> Result<usize, SrtpError> {
        // An RTP header is 12 bytes; libsrtp checks the rest.
        if len < 12 || buf.len() < len.saturating_add(room) {
            return Err(SrtpError::TooShort);
        }
        let mut n = core::ffi::c_int::try_from(len).map_err(|_| SrtpError::TooShort)?;
        // SAFETY: `buf` is valid for `len + room` bytes, which is all libsrtp
        // reads (the packet) and writes (the packet and at most `room` bytes
        // of trailer, checked above); `self.ctx` is a live session.
        let status = unsafe { op(self.ctx, buf.as_mut_ptr().cast(), &mut n) };
        SrtpError::of(status)?;
        usize::try_from(n).map_err(|_| SrtpError::TooShort)
    }
}

impl Drop for SrtpSession {
    fn drop(&mut self) {
        // SAFETY: created by srtp_create, deallocated once, here.
        unsafe {
            sys::srtp_dealloc(self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// libsrtp's own known-answer vectors (test/srtp_driver.c, also used by
    /// RTPEngine's tests): SSRC 0xcafebabe, SEQ 0x1234, ROC 0. The AES-CM
    /// one is keyed with RFC 3711 appendix B.3's master key and salt, so it
    /// checks that key derivation and B.2's counter-mode keystream end to
    /// end; RFC 7714 section 16's vectors start from derived session keys,
    /// which libsrtp's SRTP interface does not take, so libsrtp's GCM vector
    /// (the same AEAD construction over the derived keys) stands for them.
    const RTP: &str = "800f1234decafbadcafebabeabababababababababababababababab";
    const RTCP: &str = "81c8000bcafebabeabababababababababababababababab";

    fn known_answer(suite: Suite, key: &str, srtp: &str, srtcp: &str) {
        let key = hex(key);
        let mut tx = SrtpSession::new(suite, &key, Role::Protect).unwrap();
        let mut rx = SrtpSession::new(suite, &key, Role::Unprotect).unwrap();
        let mut buf = [0u8; 128];
        let plain = hex(RTP);
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
        assert_eq!(&buf[..n], &hex(srtp)[..], "{suite:?} SRTP");
        assert_eq!(rx.unprotect_rtp(&mut buf, n).unwrap(), plain.len());
        assert_eq!(&buf[..plain.len()], &plain[..]);
        let plain = hex(RTCP);
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
        assert_eq!(&buf[..n], &hex(srtcp)[..], "{suite:?} SRTCP");
        assert_eq!(rx.unprotect_rtcp(&mut buf, n).unwrap(), plain.len());
        assert_eq!(&buf[..plain.len()], &plain[..]);
    }

    #[test]
    fn aes_cm_128_hmac_sha1_80_known_answer() {
        known_answer(
            Suite::AesCm128HmacSha1_80,
            "e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6",
            "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb",
            "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798",
        );
    }

    #[test]
    fn aead_aes_128_gcm_known_answer() {
        known_answer(
            Suite::AeadAes128Gcm,
            "000102030405060708090a0b0c0d0e0fa0a1a2a3a4a5a6a7a8a9aaab",
            "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392",
            "81c8000bcafebabec98b8b5df0392a55852b6c21ac8e7025c52c6fbea2b3b446ea31123ba88ce61e80000001",
        );
    }

    #[test]
    fn forged_replayed_and_cramped_packets_are_refused() {
        let key = [7u8; 30];
        let mut tx = SrtpSession::new(Suite::AesCm128HmacSha1_80, &key, Role::Protect).unwrap();
        let mut rx = SrtpSession::new(Suite::AesCm128HmacSha1_80, &key, Role::Unprotect).unwrap();
        let plain = hex(RTP);
        let mut buf = [0u8; 64];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
        let sent = buf;
        let mut forged = sent;
        forged[20] ^= 1;
        assert_eq!(rx.unprotect_rtp(&mut forged, n), Err(SrtpError::AuthFail));
        let mut once = sent;
        assert!(rx.unprotect_rtp(&mut once, n).is_ok());
        let mut again = sent;
        assert_eq!(rx.unprotect_rtp(&mut again, n), Err(SrtpError::Replay));
        // No room for the tag.
        let mut tight = plain.clone();
        assert_eq!(
            tx.protect_rtp(&mut tight, plain.len()),
            Err(SrtpError::TooShort)
        );
        assert_eq!(
            SrtpSession::new(Suite::AeadAes128Gcm, &key, Role::Protect).err(),
            Some(SrtpError::BadKey)
        );
    }
}
