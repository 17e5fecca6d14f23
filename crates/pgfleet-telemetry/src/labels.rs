//! Bounded label values for client-chosen names (queues, kinds).

/// The label value that stands for every value past a [`LabelBudget`].
pub const OTHER: &str = "other";

/// Distinct client-chosen values (queue or kind names) a metric keeps as labels; the rest
/// are counted under [`OTHER`], so a client cannot grow the series without bound.
pub const LABEL_BUDGET: usize = 64;

/// The first `max` distinct values seen keep their own label; later ones become [`OTHER`].
#[derive(Debug)]
pub struct LabelBudget {
    max: usize,
    seen: std::sync::RwLock<std::collections::HashSet<String>>,
}

impl LabelBudget {
    /// A budget of `max` distinct values.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: Default::default(),
        }
    }

    /// `value` itself while within the budget (or seen before), else [`OTHER`]. A value seen
    /// before is answered under a shared read lock (this runs for every finished job).
    pub fn bound<'a>(&self, value: &'a str) -> &'a str {
        match self.seen.read() {
            Ok(seen) if seen.contains(value) => return value,
            Ok(_) => {}
            Err(_) => return OTHER,
        }
        let Ok(mut seen) = self.seen.write() else {
            return OTHER;
        };
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.to_owned());
            value
        } else {
            OTHER
        }
    }
}
