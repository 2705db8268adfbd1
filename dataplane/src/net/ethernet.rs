//! Ethernet II frames (IEEE 802.3 with an EtherType): a checked view over
//! the 14-byte header.

/// A MAC address.
pub type Mac = [u8; 6];

/// The broadcast MAC.
pub const BROADCAST: Mac = [0xff; 6];

/// EtherType of IPv4 (RFC 894); with [`ETHERTYPE_ARP`] the only ones we handle.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// Byte ranges of the Ethernet header.
pub mod field {
    use std::ops::Range;

    /// Destination MAC.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC.
    pub const SRC: Range<usize> = 6..12;
    /// EtherType, 16 bits, network byte order.
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// Length of the Ethernet header (no VLAN tag).
pub const HEADER_LEN: usize = 14;

/// A view over an Ethernet frame: `new_checked` validates the header length
/// once, after which the accessors never panic.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

// Indexing below is within HEADER_LEN, which `new_checked` guarantees.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// The frame, if `buffer` holds at least an Ethernet header.
    pub fn new_checked(buffer: T) -> Option<EthernetFrame<T>> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(EthernetFrame { buffer })
    }

    /// The destination MAC.
    pub fn dst(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        m
    }

    /// The source MAC.
    pub fn src(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        m
    }

    /// The EtherType, in host order ([`ETHERTYPE_IPV4`], [`ETHERTYPE_ARP`], ...).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Writes the destination MAC.
    pub fn set_dst(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac);
    }

    /// Writes the source MAC.
    pub fn set_src(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac);
    }

    /// Writes the EtherType (given in host order).
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// Swaps source and destination (a reply to the sender, in place).
    pub fn swap_addresses(&mut self) {
        let (dst, src) = (self.dst(), self.src());
        self.set_dst(src);
        self.set_src(dst);
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_read_and_written() {
        let mut b = [0u8; 16];
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.set_dst([1; 6]);
        f.set_src([2; 6]);
        f.set_ethertype(ETHERTYPE_ARP);
        f.payload_mut()[0] = 9;
        f.swap_addresses();
        assert_eq!((f.dst(), f.src(), f.ethertype()), ([2; 6], [1; 6], 0x0806));
        assert_eq!(f.payload(), [9, 0]);
        assert_eq!(b[..6], [2; 6]);
        assert!(EthernetFrame::new_checked(&b[..13]).is_none());
    }
}
