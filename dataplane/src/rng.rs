//! A tiny xorshift generator for branches, tags, Call-IDs and weighted draws
//! (not for anything secret).

/// Advances `state` and returns the next value (xorshift64*).
pub fn next(state: &mut u64) -> u64 {
    let mut x = *state | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
