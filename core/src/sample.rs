//! A small deterministic generator (xorshift64*) for demo and benchmark data, so every
//! run makes the same records. Never for anything secret: keys, tokens and passwords
//! come from the operating system's generator.

/// The generator; the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct Sample(u64);

impl Sample {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// One element of a non-empty `list`.
    pub fn pick<'a, T>(&mut self, list: &'a [T]) -> Option<&'a T> {
        let i = usize::try_from(self.below(list.len() as u64)).ok()?;
        list.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_within_bounds() {
        let (mut a, mut b) = (Sample::new(7), Sample::new(7));
        for _ in 0..100 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert_eq!(a.below(0), 0);
        assert_eq!(Sample::new(1).pick::<u8>(&[]), None);
    }
}
