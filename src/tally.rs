//! Counts of rows per status, indexed by the status type itself: the exit code and every
//! summary come from these counts, never from string look-ups.

use std::collections::BTreeMap;

use crate::domain::Status;

/// Rows per status of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally<S: Status> {
    counts: Vec<u64>,
    _status: std::marker::PhantomData<S>,
}

impl<S: Status> Default for Tally<S> {
    fn default() -> Self {
        Tally {
            counts: vec![0; S::ALL.len()],
            _status: std::marker::PhantomData,
        }
    }
}

impl<S: Status> Tally<S> {
    pub(crate) fn add(&mut self, status: S) {
        if let Some(n) = self.counts.get_mut(status.index()) {
            *n = n.saturating_add(1);
        }
    }

    pub(crate) fn get(&self, status: S) -> u64 {
        self.counts.get(status.index()).copied().unwrap_or(0)
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, n| a.saturating_add(*n))
    }

    /// Rows whose status makes the run exit 1.
    pub(crate) fn problems(&self) -> u64 {
        S::ALL
            .iter()
            .filter(|s| s.is_problem())
            .fold(0u64, |a, s| a.saturating_add(self.get(*s)))
    }

    /// `confirmed 40, invalid 3`, in the order of `order`, zero counts left out (and any
    /// status outside `order` that has rows, after them).
    pub(crate) fn describe(&self, order: &[S]) -> String {
        let listed = order
            .iter()
            .chain(S::ALL.iter().filter(|s| !order.contains(s)));
        let parts: Vec<String> = listed
            .filter_map(|s| {
                let n = self.get(*s);
                (n > 0).then(|| format!("{} {n}", s.as_str()))
            })
            .collect();
        if parts.is_empty() {
            "no rows".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// Every status of `order` with its count (zeros included), and any other status that has
    /// rows, for JSON summaries.
    pub(crate) fn to_map(&self, order: &[S]) -> BTreeMap<&'static str, u64> {
        S::ALL
            .iter()
            .filter(|s| order.contains(s) || self.get(**s) > 0)
            .map(|s| (s.as_str(), self.get(*s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RowStatus;

    #[test]
    fn tally_counts_and_describes_in_order() {
        let mut t = Tally::default();
        for s in [
            RowStatus::Invalid,
            RowStatus::Confirmed,
            RowStatus::Confirmed,
        ] {
            t.add(s);
        }
        assert_eq!(t.total(), 3);
        assert_eq!(t.problems(), 1);
        assert_eq!(
            t.describe(&[RowStatus::Confirmed, RowStatus::Invalid]),
            "confirmed 2, invalid 1"
        );
        assert_eq!(
            t.describe(&[RowStatus::Confirmed]),
            "confirmed 2, invalid 1"
        );
        let map = t.to_map(&[RowStatus::Confirmed, RowStatus::Failed]);
        assert_eq!(map.get("failed"), Some(&0));
        assert_eq!(map.get("invalid"), Some(&1));
        assert_eq!(map.get("valid"), None);
    }
}
