//! A generational slab: O(1) insert, lookup and remove by a small `Id` that
//! can travel inside a Via branch and never aliases a freed slot.

/// Index plus generation of a slab entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id {
    pub idx: u32,
    pub gen: u32,
}

#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    val: Option<T>,
}

#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, val: T) -> Id {
        self.len += 1;
        if let Some(idx) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(idx as usize) {
                slot.gen = slot.gen.wrapping_add(1);
                slot.val = Some(val);
                return Id { idx, gen: slot.gen };
            }
        }
        let idx = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            gen: 0,
            val: Some(val),
        });
        Id { idx, gen: 0 }
    }

    /// The id the next [`Slab::insert`] returns (so a value can carry its
    /// own id, e.g. inside a Via branch, before it is inserted).
    pub fn next_id(&self) -> Id {
        match self.free.last() {
            Some(&idx) => Id {
                idx,
                gen: self
                    .slots
                    .get(idx as usize)
                    .map_or(0, |s| s.gen.wrapping_add(1)),
            },
            None => Id {
                idx: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
                gen: 0,
            },
        }
    }

    pub fn get(&self, id: Id) -> Option<&T> {
        self.slots
            .get(id.idx as usize)
            .filter(|s| s.gen == id.gen)
            .and_then(|s| s.val.as_ref())
    }

    pub fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        self.slots
            .get_mut(id.idx as usize)
            .filter(|s| s.gen == id.gen)
            .and_then(|s| s.val.as_mut())
    }

    pub fn remove(&mut self, id: Id) -> Option<T> {
        let slot = self
            .slots
            .get_mut(id.idx as usize)
            .filter(|s| s.gen == id.gen)?;
        let val = slot.val.take()?;
        self.free.push(id.idx);
        self.len -= 1;
        Some(val)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every value held, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.val.as_ref())
    }

    /// Every value held with its id, in slot order.
    pub fn iter_ids(&self) -> impl Iterator<Item = (Id, &T)> {
        self.slots.iter().enumerate().filter_map(|(idx, s)| {
            let id = Id {
                idx: u32::try_from(idx).unwrap_or(u32::MAX),
                gen: s.gen,
            };
            s.val.as_ref().map(|v| (id, v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_miss() {
        let mut s = Slab::default();
        let a = s.insert(1);
        assert_eq!(s.remove(a), Some(1));
        let b = s.insert(2);
        assert_eq!(a.idx, b.idx);
        assert!(s.get(a).is_none());
        assert_eq!(s.get(b), Some(&2));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn next_id_is_what_insert_returns() {
        let mut s = Slab::default();
        for v in 0..3 {
            let id = s.next_id();
            assert_eq!(s.insert(v), id);
        }
        let second = Id { idx: 1, gen: 0 };
        s.remove(second);
        let id = s.next_id();
        assert_eq!((id.idx, id.gen), (1, 1), "a freed slot, next generation");
        assert_eq!(s.insert(9), id);
    }
}
