//! The latest value of every series, and a short in-memory history of each, which the
//! controls, the alert rules and `/metrics` read without touching the database.

use crate::series::{Labels, Sample};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

/// One series' recent points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    pub name: String,
    pub labels: Labels,
    pub points: VecDeque<(u64, f64)>,
}

impl Recent {
    pub fn last(&self) -> Option<(u64, f64)> {
        self.points.back().copied()
    }

    /// The value at or just before `t`, else the oldest kept.
    pub fn at_or_before(&self, t: u64) -> Option<(u64, f64)> {
        self.points
            .iter()
            .rev()
            .find(|(pt, _)| *pt <= t)
            .or_else(|| self.points.front())
            .copied()
    }

    /// How much a counter grew over `[now - window, now]`; a drop (a restart of the
    /// counter) counts from zero.
    pub fn increase(&self, now: u64, window: u64) -> Option<f64> {
        self.last()?;
        let (_, first) = self.at_or_before(now.saturating_sub(window))?;
        let mut total = 0.0;
        let mut prev = first;
        for &(t, v) in &self.points {
            if t + window < now {
                continue;
            }
            total += if v >= prev { v - prev } else { v };
            prev = v;
        }
        Some(total)
    }
}

/// Latest values and recent history of every series, by series key.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    inner: Arc<RwLock<BTreeMap<String, Recent>>>,
    keep_ms: u64,
}

impl Latest {
    /// Keeps `keep_ms` of history per series.
    pub fn new(keep_ms: u64) -> Self {
        Self {
            inner: Arc::default(),
            keep_ms,
        }
    }

    pub fn record(&self, samples: &[Sample]) {
        let mut map = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in samples.iter().filter(|s| s.value.is_finite()) {
            let entry = map.entry(s.series_key()).or_insert_with(|| Recent {
                name: s.name.clone(),
                labels: s.labels.clone(),
                points: VecDeque::new(),
            });
            entry.points.push_back((s.time_ms, s.value));
            let horizon = s.time_ms.saturating_sub(self.keep_ms);
            while entry.points.len() > 1 && entry.points.front().is_some_and(|(t, _)| *t < horizon)
            {
                entry.points.pop_front();
            }
        }
    }

    /// Forgets series of `name` that a collector no longer reports (e.g. a removed
    /// certificate), keeping those in `keep`.
    pub fn retain_of(&self, name: &str, keep: &dyn Fn(&Labels) -> bool) {
        let mut map = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, r| r.name != name || keep(&r.labels));
    }

    /// Every series `f` selects, copied out.
    pub fn select(&self, f: &dyn Fn(&Recent) -> bool) -> Vec<Recent> {
        let map = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().filter(|r| f(r)).cloned().collect()
    }

    /// Whether any series named `name` has a value.
    pub fn reports(&self, name: &str) -> bool {
        let map = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().any(|r| r.name == name && !r.points.is_empty())
    }

    /// The latest value of every series named `name`: (labels, time, value).
    pub fn values_of(&self, name: &str) -> Vec<(Labels, u64, f64)> {
        let map = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values()
            .filter(|r| r.name == name)
            .filter_map(|r| r.last().map(|(t, v)| (r.labels.clone(), t, v)))
            .collect()
    }

    /// Every series' latest value: (name, labels, value), in key order.
    pub fn snapshot(&self) -> Vec<(String, Labels, f64)> {
        let map = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values()
            .filter_map(|r| r.last().map(|(_, v)| (r.name.clone(), r.labels.clone(), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_counts_growth_inside_the_window_and_survives_a_reset() {
        let latest = Latest::new(3_600_000);
        let points = [
            (0, 5.0),
            (60_000, 7.0),
            (120_000, 10.0),
            (180_000, 2.0),
            (240_000, 4.0),
        ];
        let samples: Vec<_> = points
            .iter()
            .map(|(t, v)| Sample::new("c_total", &[], *v, *t))
            .collect();
        latest.record(&samples);
        let r = &latest.select(&|_| true)[0];
        // From 10 at 120 s: reset to 2 (counts 2), then +2.
        assert_eq!(r.increase(240_000, 120_000), Some(4.0));
        // Whole history: +2 +3, reset 2, +2.
        assert_eq!(r.increase(240_000, 240_000), Some(9.0));
        assert_eq!(r.last(), Some((240_000, 4.0)));
    }
}
