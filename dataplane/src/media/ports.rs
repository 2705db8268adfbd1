//! RTP/RTCP port pairs (RFC 3550 section 11: RTP on an even port, RTCP on
//! the next odd one), handed out by the engine when an SDP adds a media line.

/// Even/odd port pairs from a range, O(1) take and give back.
#[derive(Debug)]
pub struct PortPairs {
    free: Vec<u16>,
    taken: Vec<bool>,
    min: u16,
}

impl PortPairs {
    /// All even ports in `[min, max)` whose odd neighbour is also in range.
    pub fn new(min: u16, max: u16) -> PortPairs {
        let first = min + (min & 1);
        let free: Vec<u16> = (first..max).step_by(2).filter(|p| *p < max).rev().collect();
        PortPairs {
            taken: vec![false; usize::from(max - min) + 1],
            free,
            min,
        }
    }

    /// An even RTP port (RTCP is the next one).
    pub fn take(&mut self) -> Option<u16> {
        let p = self.free.pop()?;
        if let Some(t) = self.taken.get_mut(usize::from(p - self.min)) {
            *t = true;
        }
        Some(p)
    }

    /// Gives a pair back; a port not taken is ignored (no double free).
    pub fn give(&mut self, port: u16) {
        let Some(t) = port
            .checked_sub(self.min)
            .and_then(|o| self.taken.get_mut(usize::from(o)))
        else {
            return;
        };
        if *t {
            *t = false;
            self.free.push(port);
        }
    }

    /// Pairs still free.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}
