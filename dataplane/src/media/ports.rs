//! RTP/RTCP port pairs (RFC 3550 section 11: RTP on an even port, RTCP on
//! the next odd one), handed out by the engine when an SDP adds a media line.

/// Even/odd port pairs from a range, O(1) take and give back.
#[derive(Debug)]
pub struct PortPairs {
    /// Ports to hand out, last first; one taken by [`PortPairs::take_exact`]
    /// stays here and is skipped when its turn comes.
    free: Vec<u16>,
    taken: Vec<bool>,
    min: u16,
    available: usize,
}

impl PortPairs {
    /// All even ports in `[min, max)` whose odd neighbour is also in range.
    pub fn new(min: u16, max: u16) -> PortPairs {
        let first = min + (min & 1);
        let free: Vec<u16> = (first..max).step_by(2).filter(|p| *p < max).rev().collect();
        PortPairs {
            taken: vec![false; usize::from(max - min) + 1],
            available: free.len(),
            free,
            min,
        }
    }

    /// An even RTP port (RTCP is the next one).
    pub fn take(&mut self) -> Option<u16> {
        while let Some(p) = self.free.pop() {
            let Some(t) = self.taken.get_mut(usize::from(p - self.min)) else {
                continue;
            };
            if !*t {
                *t = true;
                self.available -= 1;
                return Some(p);
            }
        }
        None
    }

    /// Takes the pair at `port` (a call restored after a restart keeps its
    /// ports); `false` when it is taken, odd or out of the range.
    pub fn take_exact(&mut self, port: u16) -> bool {
        if !port.is_multiple_of(2) || port < self.min + (self.min & 1) {
            return false;
        }
        let i = usize::from(port - self.min);
        // The pair's RTCP port must be in range too.
        if i + 1 >= self.taken.len() {
            return false;
        }
        match self.taken.get_mut(i) {
            Some(t) if !*t => {
                *t = true;
                self.available -= 1;
                true
            }
            _ => false,
        }
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
            self.available += 1;
            self.free.push(port);
        }
    }

    /// Pairs still free.
    pub fn available(&self) -> usize {
        self.available
    }
}
