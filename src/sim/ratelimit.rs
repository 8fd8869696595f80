//! The requests-per-second budget: a token bucket that refuses with the seconds to wait,
//! and describes itself in the `x-ratelimit-*-requests` headers the real API sends.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` of them saved up (a second's
/// worth unless told otherwise). Its rate can change after a number of requests, to play a
/// server whose limit drops mid-crawl.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    burst: Option<f64>,
    change: Option<(u64, f64)>,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
    taken: u64,
}

/// The bucket as one answer describes it: what `x-ratelimit-*-requests` carry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Budget {
    /// The sustained rate, per minute (how the real API states its request limit).
    pub(crate) limit_per_minute: u64,
    /// Whole requests left right now.
    pub(crate) remaining: u64,
    /// Until the bucket is full again.
    pub(crate) reset: Duration,
}

/// A refused request: the budget after it, and whole seconds (at least 1) until a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Refused {
    pub(crate) budget: Budget,
    pub(crate) retry_after_secs: u64,
}

fn capacity(rate: f64, burst: Option<f64>) -> f64 {
    burst.unwrap_or(rate).max(1.0)
}

impl TokenBucket {
    /// `rate` requests a second with `burst` saved up at most (`None` = a second's worth);
    /// after `change.0` requests the rate becomes `change.1`.
    pub(crate) fn new(rate: f64, burst: Option<f64>, change: Option<(u64, f64)>) -> TokenBucket {
        let rate = rate.max(0.001);
        let capacity = capacity(rate, burst);
        TokenBucket {
            burst,
            change: change.map(|(after, rate)| (after, rate.max(0.001))),
            state: Mutex::new(BucketState {
                rate,
                capacity,
                tokens: capacity,
                last: Instant::now(),
                taken: 0,
            }),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub(crate) fn take(&self) -> Result<Budget, Refused> {
        self.take_at(Instant::now())
    }

    // The header figures are rounded non-negative floats; a float-to-integer `as` saturates.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn take_at(&self, now: Instant) -> Result<Budget, Refused> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = &mut *state;
        s.taken += 1;
        if let Some((after, rate)) = self.change
            && s.taken == after + 1
        {
            s.rate = rate;
            s.capacity = capacity(rate, self.burst);
            s.tokens = s.tokens.min(s.capacity);
        }
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * s.rate).min(s.capacity);
        s.last = now;
        let granted = s.tokens >= 1.0;
        if granted {
            s.tokens -= 1.0;
        }
        let budget = Budget {
            limit_per_minute: (s.rate * 60.0).round().max(1.0) as u64,
            remaining: s.tokens.floor().max(0.0) as u64,
            reset: Duration::from_secs_f64(((s.capacity - s.tokens) / s.rate).max(0.0)),
        };
        if granted {
            Ok(budget)
        } else {
            let wait = (1.0 - s.tokens) / s.rate;
            Err(Refused {
                budget,
                retry_after_secs: (wait.ceil() as u64).max(1),
            })
        }
    }
}

/// A duration as Go prints it, which is how OpenAI writes `x-ratelimit-reset-requests`:
/// `20ms`, `1s`, `8.64s`, `6m0s`, `1h0m0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let decimal = |value: u128, scale: u128| {
        let whole = value / scale;
        let frac = value % scale;
        if frac == 0 {
            whole.to_string()
        } else {
            let width = scale.ilog10() as usize;
            let digits = format!("{frac:0width$}");
            format!("{whole}.{}", digits.trim_end_matches('0'))
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let secs_nanos = nanos % 60_000_000_000;
    let minutes = nanos / 60_000_000_000;
    let seconds = format!("{}s", decimal(secs_nanos, 1_000_000_000));
    match (minutes / 60, minutes % 60) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_with_time_and_retry_after_is_at_least_one_second() {
        let b = TokenBucket::new(2.0, None, None);
        let t0 = Instant::now();
        assert!(b.take_at(t0).is_ok());
        assert!(b.take_at(t0).is_ok());
        assert_eq!(b.take_at(t0).map_err(|r| r.retry_after_secs), Err(1));
        assert!(b.take_at(t0 + Duration::from_millis(600)).is_ok());
        let slow = TokenBucket::new(0.1, None, None);
        assert!(slow.take_at(t0).is_ok());
        assert_eq!(slow.take_at(t0).map_err(|r| r.retry_after_secs), Err(10));
    }

    #[test]
    fn a_small_burst_refuses_the_second_request_of_a_clump() {
        let b = TokenBucket::new(100.0, Some(1.0), None);
        let t0 = Instant::now();
        assert!(b.take_at(t0).is_ok());
        assert!(b.take_at(t0 + Duration::from_millis(1)).is_err());
        // 10 ms later a token has come back: an evenly paced stream is never refused.
        for i in 1..50 {
            assert!(
                b.take_at(t0 + Duration::from_millis(10 * i + 2)).is_ok(),
                "{i}"
            );
        }
    }

    #[test]
    fn the_budget_states_the_rate_per_minute_the_tokens_left_and_the_time_to_full() {
        let b = TokenBucket::new(50.0, Some(10.0), None);
        let t0 = Instant::now();
        let budget = b.take_at(t0).expect("a token");
        assert_eq!(budget.limit_per_minute, 3000);
        assert_eq!(budget.remaining, 9);
        assert_eq!(budget.reset, Duration::from_millis(20));
        for _ in 0..9 {
            b.take_at(t0).expect("a token");
        }
        let refused = b.take_at(t0).expect_err("empty");
        assert_eq!(refused.budget.remaining, 0);
        assert_eq!(refused.budget.reset, Duration::from_millis(200));
    }

    #[test]
    fn the_rate_drops_after_the_given_number_of_requests() {
        let b = TokenBucket::new(100.0, Some(1.0), Some((2, 10.0)));
        let t0 = Instant::now();
        assert_eq!(b.take_at(t0).map(|b| b.limit_per_minute), Ok(6000));
        let second = b.take_at(t0 + Duration::from_millis(10)).expect("a token");
        assert_eq!(second.limit_per_minute, 6000);
        // The third request meets the new rate: 10 ms refill only a tenth of a token now.
        let third = b.take_at(t0 + Duration::from_millis(20));
        assert_eq!(third.map_err(|r| r.budget.limit_per_minute), Err(600));
    }

    #[test]
    fn durations_are_written_as_go_writes_them() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(8640), "8.64s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(90_500), "1m30.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ] {
            assert_eq!(go_duration(d), text);
        }
    }
}
