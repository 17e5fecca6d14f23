//! Property tests of the queue's pure parts: backoff, partition hashing, rendezvous
//! assignment and weighted queue shares.

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use pgfleet_queue::backoff::Backoff;
use pgfleet_queue::claim::QueueOrder;
use pgfleet_queue::ownership::rendezvous_partitions;
use pgfleet_queue::PartitionCount;
use proptest::prelude::*;
use rand::SeedableRng;

proptest! {
    #[test]
    fn backoff_grows_is_capped_and_jitter_stays_in_bounds(
        base_ms in 1u64..5_000, max_s in 1u64..7_200, jitter in 0.0f64..0.9, attempt in 1i32..200, seed in any::<u64>()
    ) {
        let b = Backoff { base: Duration::from_millis(base_ms), max: Duration::from_secs(max_s), jitter };
        let n = b.nominal(attempt);
        prop_assert!(n <= b.max);
        prop_assert!(b.nominal(attempt + 1) >= n, "non-decreasing");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let d = b.delay_with(attempt, &mut rng).as_secs_f64();
        let n = n.as_secs_f64();
        prop_assert!(d >= n * (1.0 - jitter) - 1e-9 && d <= n * (1.0 + jitter) + 1e-9);
    }

    #[test]
    fn partition_of_a_key_is_in_range_and_stable(p in 1u16..=1024, key in ".{1,64}") {
        let count = PartitionCount::new(p).unwrap();
        let a = count.of_key(&key);
        prop_assert!(a >= 0 && (a as u16) < p);
        prop_assert_eq!(a, count.of_key(&key));
    }

    #[test]
    fn rendezvous_is_disjoint_covering_and_moves_only_the_leavers_partitions(
        p in 1u16..=256, workers in prop::collection::btree_set("[a-z0-9-]{1,24}", 1..12), leaver in any::<prop::sample::Index>()
    ) {
        let count = PartitionCount::new(p).unwrap();
        let ws: Vec<String> = workers.into_iter().collect();
        let mut seen = BTreeSet::new();
        for w in &ws {
            for part in rendezvous_partitions(w, &ws, count) {
                prop_assert!(seen.insert(part), "partition {} owned twice", part);
            }
        }
        prop_assert_eq!(seen.len(), p as usize, "every partition has an owner");
        if ws.len() > 1 {
            let gone = leaver.index(ws.len());
            let rest: Vec<String> = ws.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, w)| w.clone()).collect();
            for w in &rest {
                let before = rendezvous_partitions(w, &ws, count);
                let after = rendezvous_partitions(w, &rest, count);
                prop_assert!(before.iter().all(|x| after.contains(x)), "{} lost a partition it kept owning", w);
            }
        }
    }

    #[test]
    fn weighted_shares_cover_the_limit_and_never_starve_a_queue(
        weights in prop::collection::vec(1u32..20, 1..6), limit in 1usize..2_000
    ) {
        let n = weights.len();
        let shares = QueueOrder::Weighted(weights).limits(n, limit);
        prop_assert_eq!(shares.len(), n);
        prop_assert!(shares.iter().all(|&s| s >= 1));
        prop_assert!(shares.iter().map(|&s| s as usize).sum::<usize>() >= limit);
    }
}

proptest! {
    /// A schedule's expression comes from users (API, CLI, files): whatever it is, parsing
    /// and computing the next ticks answers Ok or a named error, never a panic.
    #[test]
    fn any_schedule_expression_parses_or_is_refused_without_panicking(
        fields in proptest::collection::vec(
            prop_oneof![
                Just("*".to_owned()), Just("*/0".to_owned()), Just("L".to_owned()),
                Just("5#9".to_owned()), Just("31W".to_owned()), Just("MON-SUN".to_owned()),
                "[0-9]{1,3}", "[0-9]{1,2}-[0-9]{1,3}/[0-9]{1,3}", "[A-Z@#/,*?LW0-9-]{1,6}",
            ],
            0..8,
        ),
        every in "@every [0-9]{0,25}(ms|s|m|h|d|)",
        tz in prop_oneof![Just("UTC"), Just("Europe/Berlin"), Just("America/New_York"), Just("Australia/Lord_Howe")],
        start in 0i64..4_000_000_000,
    ) {
        use pgfleet_queue::schedule::Spec;
        let tz: chrono_tz::Tz = tz.parse().unwrap();
        let t = chrono::DateTime::from_timestamp(start, 0).unwrap();
        for text in [fields.join(" "), every] {
            match Spec::parse(&text) {
                Ok(spec) => { let _ = spec.next_after(tz, t); }
                Err(pgfleet_queue::QueueError::Invalid { field, .. }) => prop_assert_eq!(field, "cron"),
                Err(e) => prop_assert!(false, "{text}: {e}"),
            }
        }
    }
}
