//! The requests-per-second budget: a token bucket that refuses with the seconds to wait.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket holding at most one second's worth of requests.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64) -> TokenBucket {
        let rate = rate.max(0.001);
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes one token, or says how many whole seconds (at least 1) until one is there.
    pub(crate) fn take(&self) -> Result<(), u64> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.rate;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_budget_refills_with_time_and_retry_after_is_at_least_one_second() {
        let b = TokenBucket::new(2.0);
        let t0 = Instant::now();
        assert!(b.take_at(t0).is_ok());
        assert!(b.take_at(t0).is_ok());
        assert_eq!(b.take_at(t0), Err(1));
        assert!(b.take_at(t0 + Duration::from_millis(600)).is_ok());
        let slow = TokenBucket::new(0.1);
        assert!(slow.take_at(t0).is_ok());
        assert_eq!(slow.take_at(t0), Err(10));
    }
}
