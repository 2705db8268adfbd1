//! The two faces of the SBC, and values kept once per face.
//!
//! Every layer speaks of sides: the engine's legs, the relay's stream ends,
//! the backends' ports and sockets, the routing rule. [`Side`] is defined here,
//! at the bottom of the crate, so nothing imports it from a layer above, and
//! [`BySide`] replaces `private_*`/`public_*` field pairs and hand-written
//! side-to-index matches.

use std::ops::{Index, IndexMut, Not};

/// The two faces of the SBC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Side {
    /// Toward the carriers.
    Private,
    /// Toward the Voice AI gateways.
    Public,
}

impl Side {
    /// Both sides, private first (the order of [`BySide`]).
    pub const ALL: [Side; 2] = [Side::Private, Side::Public];

    /// The side a message from this one goes to.
    pub fn other(self) -> Side {
        !self
    }

    /// 0 for private, 1 for public.
    pub fn index(self) -> usize {
        self as usize
    }

    /// `"private"` or `"public"`, as config keys and the API name them.
    pub fn name(self) -> &'static str {
        match self {
            Side::Private => "private",
            Side::Public => "public",
        }
    }
}

impl Not for Side {
    type Output = Side;

    fn not(self) -> Side {
        match self {
            Side::Private => Side::Public,
            Side::Public => Side::Private,
        }
    }
}

/// One `T` per side, indexed by [`Side`]: `ports[Side::Public]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct BySide<T>(pub [T; 2]);

impl<T> BySide<T> {
    /// `private` and `public`, in that order.
    pub const fn new(private: T, public: T) -> BySide<T> {
        BySide([private, public])
    }

    /// A value per side from `f(side)`.
    pub fn from_fn(mut f: impl FnMut(Side) -> T) -> BySide<T> {
        BySide::new(f(Side::Private), f(Side::Public))
    }

    /// Applies `f` to each side's value, private first.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> BySide<U> {
        let [a, b] = self.0;
        BySide::new(f(a), f(b))
    }

    /// `(side, &value)`, private first.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        Side::ALL.into_iter().zip(self.0.iter())
    }

    /// `(side, &mut value)`, private first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Side, &mut T)> {
        Side::ALL.into_iter().zip(self.0.iter_mut())
    }
}

impl<T> Index<Side> for BySide<T> {
    type Output = T;

    fn index(&self, side: Side) -> &T {
        let [private, public] = &self.0;
        match side {
            Side::Private => private,
            Side::Public => public,
        }
    }
}

impl<T> IndexMut<Side> for BySide<T> {
    fn index_mut(&mut self, side: Side) -> &mut T {
        let [private, public] = &mut self.0;
        match side {
            Side::Private => private,
            Side::Public => public,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_index_their_own_values() {
        let mut v = BySide::new("p", "q");
        assert_eq!(v[Side::Private], "p");
        assert_eq!(v[Side::Public], "q");
        v[Side::Public] = "r";
        assert_eq!(v.0, ["p", "r"]);
        assert_eq!(!Side::Private, Side::Public);
        assert_eq!(Side::Public.other(), Side::Private);
        assert_eq!(Side::ALL.map(Side::index), [0, 1]);
        let names: Vec<_> = BySide::from_fn(Side::name)
            .iter()
            .map(|(s, n)| (s, *n))
            .collect();
        assert_eq!(
            names,
            [(Side::Private, "private"), (Side::Public, "public")]
        );
    }
}
