//! Partitions: a fixed number `P` chosen at install; a job's partition is a stable hash of
//! its partition key modulo `P`. Each partition has its own NOTIFY channel.
//!
//! The hash is 64-bit FNV-1a over the key's UTF-8 bytes: trivial to reproduce in any
//! language, stable across releases, and good enough to spread keys evenly.

use crate::error::{QueueError, Result};

/// The default partition count for a new install.
pub const DEFAULT_PARTITIONS: u16 = 16;
/// The largest partition count the schema accepts.
pub const MAX_PARTITIONS: u16 = 1024;

/// The number of partitions, fixed at install (1..=1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionCount(u16);

impl PartitionCount {
    /// Validates a partition count.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] when `n` is 0 or above [`MAX_PARTITIONS`].
    pub fn new(n: u16) -> Result<Self> {
        if n == 0 || n > MAX_PARTITIONS {
            return Err(QueueError::invalid(
                "partitions",
                format!("must be between 1 and {MAX_PARTITIONS}, got {n}"),
            ));
        }
        Ok(Self(n))
    }

    /// The count as a number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// Every partition, `0..P`.
    pub fn all(self) -> Vec<i16> {
        (0..self.0 as i16).collect()
    }

    /// The partition of a key: `fnv1a64(key) mod P`.
    pub fn of_key(self, key: &str) -> i16 {
        (fnv1a64(key.as_bytes()) % u64::from(self.0)) as i16
    }
}

impl Default for PartitionCount {
    fn default() -> Self {
        Self(DEFAULT_PARTITIONS)
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The NOTIFY channel of a partition: `pgfleet_p<N>`.
pub fn channel(partition: i16) -> String {
    format!("pgfleet_p{partition}")
}

/// The partition a channel name belongs to, if it is a partition channel.
pub fn partition_of_channel(channel: &str) -> Option<i16> {
    channel.strip_prefix("pgfleet_p")?.parse().ok()
}

/// The control channel: pause/resume and cancel requests are announced here.
pub const CONTROL_CHANNEL: &str = "pgfleet_control";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_spread_over_all_partitions_and_are_stable() {
        let p = PartitionCount::new(16).unwrap();
        let mut seen = [0u32; 16];
        for i in 0..16_000 {
            seen[p.of_key(&format!("user-{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(p.of_key("user-42"), p.of_key("user-42"));
    }

    #[test]
    fn counts_are_bounded() {
        assert!(PartitionCount::new(0).is_err());
        assert!(PartitionCount::new(1025).is_err());
        assert_eq!(PartitionCount::new(1).unwrap().of_key("anything"), 0);
    }

    #[test]
    fn channels_round_trip() {
        assert_eq!(channel(7), "pgfleet_p7");
        assert_eq!(partition_of_channel("pgfleet_p7"), Some(7));
        assert_eq!(partition_of_channel(CONTROL_CHANNEL), None);
    }
}
