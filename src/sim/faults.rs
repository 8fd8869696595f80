//! Injected faults: the ones a test asks for by path, and random 500s at a fault rate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::org::splitmix;

/// A fault a test injects for requests whose path (after `/v1`) starts with `path_prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Path after `/v1`, e.g. `/organization/projects/proj_x/api_keys`.
    pub path_prefix: String,
    /// What happens.
    pub kind: FaultKind,
    /// How many requests it hits; `None` = every one.
    pub times: Option<u32>,
}

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status and the API's error body.
    Status(u16),
    /// Answer 429 with this `Retry-After`.
    RateLimited {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Answer 200 with a truncated body.
    MalformedJson,
    /// Answer 200 with this field removed from every object of the page (the objects of
    /// `data`, or the one object of a single read): an API object missing its id.
    DropField(String),
    /// Answer normally after this delay.
    Delay(Duration),
}

/// The fault table and the random-fault generator of one simulator.
#[derive(Debug)]
pub(crate) struct Faults {
    list: Mutex<Vec<Fault>>,
    // Lets the hot path skip the lock when no fault is registered.
    len: AtomicUsize,
    rate: f64,
    seed: u64,
    counter: AtomicU64,
}

impl Faults {
    pub(crate) fn new(rate: f64, seed: u64) -> Faults {
        Faults {
            list: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
            rate: rate.clamp(0.0, 1.0),
            seed,
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(&self, fault: Fault) {
        if fault.times == Some(0) {
            return;
        }
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.push(fault);
        self.len.store(list.len(), Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.clear();
        self.len.store(0, Ordering::Release);
    }

    /// The first registered fault matching `path`, used up by one hit.
    pub(crate) fn take(&self, path: &str) -> Option<FaultKind> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = list.iter().position(|f| path.starts_with(&f.path_prefix))?;
        let kind = list[i].kind.clone();
        if let Some(times) = &mut list[i].times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                list.remove(i);
            }
        }
        self.len.store(list.len(), Ordering::Release);
        Some(kind)
    }

    /// Whether this request gets a random 500: a deterministic sequence from the seed, so
    /// a failing run can be replayed.
    pub(crate) fn random_failure(&self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let x = splitmix(self.seed ^ splitmix(n));
        ((x >> 11) as f64 / (1u64 << 53) as f64) < self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_is_used_up() {
        let f = Faults::new(0.0, 1);
        f.add(Fault {
            path_prefix: "/organization/projects/p1".into(),
            kind: FaultKind::Status(503),
            times: Some(2),
        });
        assert_eq!(f.take("/organization/projects"), None);
        assert_eq!(
            f.take("/organization/projects/p1/users"),
            Some(FaultKind::Status(503))
        );
        assert_eq!(
            f.take("/organization/projects/p1"),
            Some(FaultKind::Status(503))
        );
        assert_eq!(f.take("/organization/projects/p1"), None);
    }

    #[test]
    fn the_fault_rate_is_roughly_honoured() {
        let f = Faults::new(0.25, 7);
        let hits = (0..10_000).filter(|_| f.random_failure()).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| Faults::new(0.0, 7).random_failure()));
    }
}
