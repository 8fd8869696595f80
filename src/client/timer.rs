//! A sleep that ends within a fraction of a millisecond of its deadline, for the gate's
//! paced release times.
//!
//! Tokio's timer wheel fires on whole milliseconds, and late: a request paced 20.3 ms
//! after the last one left 20 or 21 ms after it. Against a server whose burst allowance
//! is one request, every gap of 20 ms at a limit of 50 a second is a 429: traced at
//! 50 ms × 50/s with the limit stated by headers, all 31 refusals of a crawl arrived
//! 19.4–20.0 ms after the last accepted request, and the delay from send to arrival varied
//! by 0.12 ms at the 99th percentile. The timer, not the path, set the pace's precision.
//!
//! One thread sleeps until the earliest deadline (a futex wait, which the kernel ends
//! within its timer slack, 50 µs by default) and wakes the tasks whose deadline has come.
//! It is started on first use and then lives as long as the process, parked while no
//! request waits for its slot.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Waits until `deadline`, ending within the kernel's timer slack of it rather than on
/// the next millisecond tick.
pub(super) async fn sleep_until(deadline: Instant) {
    match timer() {
        Some(timer) => {
            Sleep {
                timer,
                deadline,
                registered: None,
            }
            .await;
        }
        // No thread to serve deadlines: Tokio's timer, a millisecond coarser.
        None => tokio::time::sleep_until(deadline.into()).await,
    }
}

/// A wait on the timer thread.
struct Sleep {
    timer: &'static Timer,
    deadline: Instant,
    /// The waker last handed to the timer thread: handed again only when the task's
    /// waker changes, so that a task polled often does not fill the heap.
    registered: Option<Waker>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_none_or(|waker| !waker.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            self.timer.add(self.deadline, waker.clone());
            self.registered = Some(waker);
        }
        Poll::Pending
    }
}

/// A deadline and the task to wake at it; ordered by deadline, then by arrival.
struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct Pending {
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
}

/// The deadlines waited for, and the thread that serves them.
struct Timer {
    pending: Mutex<Pending>,
    changed: Condvar,
}

/// The process's one timer, its thread started on first use; `None` when no thread could
/// be started.
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("orgwarden-pacer".to_owned())
            .spawn(move || timer.run())
        {
            Ok(_) => Some(timer),
            Err(error) => {
                tracing::warn!(%error, "no pacing timer thread: pacing to the millisecond");
                None
            }
        }
    })
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock leaves a heap of wakers behind; still usable.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, deadline: Instant, waker: Waker) {
        let mut pending = self.lock();
        let seq = pending.next_seq;
        pending.next_seq += 1;
        let earliest = pending
            .heap
            .peek()
            .is_none_or(|Reverse(first)| deadline < first.deadline);
        pending.heap.push(Reverse(Entry {
            deadline,
            seq,
            waker,
        }));
        drop(pending);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Sleeps until the earliest deadline, wakes every task whose deadline has come, and
    /// again; parked while nothing waits.
    fn run(&self) {
        let mut pending = self.lock();
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(Reverse(first)) = pending.heap.peek() {
                if first.deadline > now {
                    break;
                }
                if let Some(Reverse(entry)) = pending.heap.pop() {
                    due.push(entry.waker);
                }
            }
            let wait = pending
                .heap
                .peek()
                .map(|Reverse(first)| first.deadline.saturating_duration_since(now));
            if !due.is_empty() {
                // Woken outside the lock: a waker may run code that adds a deadline.
                drop(pending);
                due.into_iter().for_each(Waker::wake);
                pending = self.lock();
                continue;
            }
            pending = match wait {
                Some(wait) => {
                    self.changed
                        .wait_timeout(pending, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // How close to its deadline a sleep ends is measured by the benchmark's traces, not
    // here: a shared machine may hold any thread back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sleep_never_ends_before_its_deadline() {
        // Sub-millisecond deadlines, which Tokio's wheel would round to its next tick.
        for i in 0..200u32 {
            let deadline = Instant::now() + Duration::from_micros(300 + u64::from(i % 7) * 110);
            sleep_until(deadline).await;
            assert!(Instant::now() >= deadline, "woke before its deadline");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_sleepers_added_latest_first_each_wake_at_or_after_their_deadline() {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in (0..50u64).rev() {
            let deadline = start + Duration::from_millis(5) + Duration::from_micros(i * 200);
            tasks.push(tokio::spawn(async move {
                sleep_until(deadline).await;
                (deadline, Instant::now())
            }));
        }
        for task in tasks {
            let (deadline, woke) = task.await.expect("the sleeper ran");
            assert!(woke >= deadline);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nearer_deadline_added_later_is_not_held_behind_a_farther_one() {
        let far = tokio::spawn(sleep_until(Instant::now() + Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Held behind the first, it would end in 30 s.
        let near = sleep_until(Instant::now() + Duration::from_millis(5));
        tokio::time::timeout(Duration::from_secs(5), near)
            .await
            .expect("the nearer deadline woke its task");
        far.abort();
    }

    #[test]
    fn a_deadline_already_come_is_ready_on_the_first_poll() {
        use futures::FutureExt;
        let now = Instant::now();
        assert_eq!(sleep_until(now).now_or_never(), Some(()));
        let past = now.checked_sub(Duration::from_millis(5)).unwrap_or(now);
        assert_eq!(sleep_until(past).now_or_never(), Some(()));
        let future = now + Duration::from_secs(60);
        assert_eq!(sleep_until(future).now_or_never(), None);
    }
}
