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
    /// Pairs in the range.
    total: usize,
    /// The most pairs [`PortPairs::take`] hands out at once.
    limit: usize,
}

impl PortPairs {
    /// All even ports in `[min, max)` whose odd neighbour is also in range.
    pub fn new(min: u16, max: u16) -> PortPairs {
        let first = min + (min & 1);
        let free: Vec<u16> = (first..max).step_by(2).filter(|p| *p < max).rev().collect();
        PortPairs {
            taken: vec![false; usize::from(max - min) + 1],
            available: free.len(),
            total: free.len(),
            free,
            min,
            limit: usize::MAX,
        }
    }

    /// At most `max` pairs held at once through [`PortPairs::take`]
    /// (`[media] max_sessions`); `None`: the range's.
    pub fn limited(mut self, max: Option<u32>) -> PortPairs {
        self.limit = max.map_or(usize::MAX, |m| m as usize);
        self
    }

    /// An even RTP port (RTCP is the next one).
    pub fn take(&mut self) -> Option<u16> {
        if self.in_use() >= self.limit {
            return None;
        }
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
    /// ports, even past the limit); `false` when it is taken, odd or out of
    /// the range.
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

    /// Pairs [`PortPairs::take`] can still hand out: free in the range and
    /// within the limit.
    pub fn available(&self) -> usize {
        self.available.min(self.limit.saturating_sub(self.in_use()))
    }

    /// Pairs held now.
    fn in_use(&self) -> usize {
        self.total - self.available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_caps_the_pairs_held_but_not_a_restored_one() {
        let mut p = PortPairs::new(10_000, 10_010).limited(Some(2));
        assert_eq!(p.available(), 2);
        let (a, b) = (p.take().unwrap(), p.take().unwrap());
        assert_eq!((p.available(), p.take()), (0, None));
        // A call restored after a restart keeps its ports past the limit.
        assert!(p.take_exact(10_008));
        p.give(a);
        assert_eq!(
            (p.available(), p.take()),
            (0, None),
            "three held, limit two"
        );
        p.give(b);
        p.give(10_008);
        assert_eq!(p.available(), 2);
        assert!(p.take().is_some());
        // No limit: the range's five pairs.
        assert_eq!(PortPairs::new(10_000, 10_010).limited(None).available(), 5);
    }
}
