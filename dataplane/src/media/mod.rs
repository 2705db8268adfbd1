//! The media relay's building blocks (RTPEngine's job), pure code over
//! bytes shared by both backends:
//!
//! ```text
//!  engine ── offer/answer ─► sdp::rewrite (our address and ports in the body)
//!         ── ports::PortPairs (even RTP port, RTCP next) per side
//!         ── cmd::MediaCmd ──ring──► relay::RelayTable (per backend's relay loop)
//!  packet ─► RelayTable::verdict ─► Relay { side, lane, port, to } | Drop(reason)
//!                 └── rtp::RtpStats per direction ─► call::CallRecord media lines
//! ```

pub mod cmd;
pub mod offer;
pub mod ports;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod sdes;
pub mod sdp;

pub use cmd::{MediaCmd, SrtpKeys};
pub use offer::Codec;
pub use ports::PortPairs;
pub use relay::{DropReason, End, RelayTable, Stream, Verdict};
pub use rtp::{RtpPacket, RtpStats, TelephoneEvent};
