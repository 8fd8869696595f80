//! The gate every Admin API request passes: how many are in flight, when each may start,
//! and how both adapt to what the API allows (its 429s, its rate-limit headers, and the
//! limit an earlier crawl found). The HTTP side is in the parent module: this one sees only
//! when each request left, when its answer came and what it was, and the answer's
//! rate-limit headers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Where a request joins the line at the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// Behind every request already waiting: a read not yet begun.
    Back,
    /// Ahead of them: the next page of a list, or a retry. A paged list is a chain whose
    /// every page waits a round trip, and a crawl ends no sooner than its longest chain;
    /// at the back of a line thousands deep (a crawl queues every project's reads at
    /// once) each page would also wait out the line, unless the task asking for it
    /// happened to find a slot free before any waiting request woke.
    Front,
}

impl Queue {
    /// The line for one page of a list: the first starts a read, and every later one
    /// continues it ([`Queue::Front`]).
    pub fn for_page(first: bool) -> Self {
        if first { Queue::Back } else { Queue::Front }
    }
}

/// The shared gate every request passes. It bounds the requests in flight and spaces their
/// start times at a pace, and adapts both:
///
/// - **Concurrency** (adaptive mode): starts small; during slow start it grows by half a
///   slot per answer while every slot is taken by a request on the wire (half as much
///   again per round trip, never past what the pace needs), after it to what the pace
///   needs over a round trip (Little's law, with half again for room), up to the
///   ceiling. It shrinks by a tenth per round trip while the short-term round trip is
///   more than twice the long-term one (requests queueing somewhere).
/// - **Pace** (requests per second): spread evenly rather than released in bursts, so a
///   server with a small burst allowance sees a steady stream. Adaptive mode starts at
///   [`START_PACE`] and grows by a quarter per round trip (every 50 to 100 ms) until the
///   first 429s (slow start); a fixed concurrency starts unpaced. Rate-limit headers set
///   the pace just under the stated limit before any 429. Without them the limit is
///   *measured* from the 429s: between two refused requests the server's bucket was empty,
///   so the requests it accepted that were sent between them, per second between their
///   sends, is the rate it refills at ([`GateState::measured_limit`]); one still
///   unanswered then counts as accepted, since a refusal comes back no later than an
///   acceptance (from a gateway, long before). A 429 sets the pace
///   just under that measure (or cuts it by 3% while there is none); a rare 429 among
///   hundreds of answers cuts nothing. After a quiet probe interval the pace climbs back
///   under the measure and then creeps above it, 1% and then faster up to 25% a step, so
///   a raised limit (or one measured too low) is found again; each episode that measures
///   the same limit again doubles the wait between steps above it (up to 8 intervals),
///   since each such step only buys the next episode's 429s. Requests leave at least half
///   the pace's interval apart, even when a late timer finds several due at once.
/// - **A bucket one request deep** (no headers): it measures about half its limit, so a
///   fresh crawl's second and third requests leave back to back: a bucket one deep,
///   full at the start, refuses one of them, and slow start gives way at once to the
///   search below ([`GateState::first_depth_test`]). Otherwise, once per crawl, after the
///   first measure, two requests leave back to back after a pause: a bucket one deep
///   refuses the second, a deeper one accepts both ([`PairTest`]), unless the pause was
///   too short for it to refill at the limit measured by then ([`PAUSE_REFILL`]). Against
///   one deep, pairs a gap apart find the limit instead of the probe, each at the cost of at
///   most one 429 ([`Search`]), and a 429 that measures no limit under the pace is taken
///   for the jitter of arrivals.
/// - **What an earlier crawl found** ([`Gate::start_crawl`]): each crawl starts afresh,
///   and given the limit and burst allowance the last crawl of the same API found, paces
///   just under that limit from the first request, with no slow start. Above it, each
///   probe step goes at most 15% higher until more has been sent above the limit than
///   the bucket held ([`GENTLE`], [`OUTGROWN`]); the bucket's depth is measured where it
///   first runs dry ([`GateState::measured_depth`]).
///
/// `Retry-After` holds only the request that received it: the others go on at the pace,
/// which is what keeps one 429 from stalling a whole crawl. Requests wait in line in the
/// order they came, except that a [`Queue::Front`] request goes ahead of every
/// [`Queue::Back`] one.
pub(super) struct Gate {
    max: usize,
    adaptive: bool,
    state: Mutex<GateState>,
    /// Wakes a [`Queue::Back`] request waiting for a slot.
    notify: Notify,
    /// Wakes a [`Queue::Front`] request waiting for a slot.
    front: Notify,
}

/// The pace adaptive mode starts at before anything is known about the server.
const START_PACE: f64 = 25.0;
/// The concurrency adaptive mode starts at.
const START_LIMIT: usize = 8;
/// In slow start, paced requests leave at least this share of the pace's interval apart,
/// even when a late timer finds several due at once (the benchmark's traces showed pairs
/// sent 0.1 ms apart at a pace of 200 a second, which a small burst allowance refuses).
/// Not more: slow start sleeps on Tokio's timer, which fires on whole milliseconds, so a
/// request held back waits for the next one, and at three quarters of the interval a
/// late timer's backlog never caught up at 500 a second (1.18 against 1.07 in the
/// benchmark). Against a bucket a 429 has shown shallow, past slow start (on the precise
/// timer) requests leave a whole interval apart: a backlog released at half the interval
/// after a stall is a clump, and a bucket one request deep refused every other request
/// of it (traced at 200 ms x 500/s: 35 of 77 refusals came 1.1-2.0 ms after the request
/// before, at a pace of 2.2 ms). Each late wake-up then delays the requests after it (a
/// pace of 492 a second ran at 470): against a deeper bucket, which absorbs a clump, that
/// lag cost 4-5% of the ratio with no 429 to show for it (1.07 became 1.13 at 400 ms x
/// 500/s with a tenth's burst), so it is paid only once a bucket has shown itself shallow.
/// Catching up at the limit the margin keeps under instead doubled the 429s at a burst of
/// one for no better ratio (four runs each).
const RELEASE_SPACING: f64 = 0.5;
/// Start times are handed out no further ahead than this, or [`SLOT_HORIZON_SLOTS`] of
/// the pace's intervals when that is longer. A start time is fixed when it is handed out,
/// at the pace of that moment: with the in-flight window's worth handed out (half again
/// a round trip's requests, more after a cut), a change of pace reached the requests
/// 0.3–1 s later, and a search's pairs waited that long for their turn (traced at 400 ms
/// × 200/s: the pace found after a round ran at the cut pace of 58 for another second).
const SLOT_HORIZON: Duration = Duration::from_millis(20);
/// See [`SLOT_HORIZON`].
const SLOT_HORIZON_SLOTS: f64 = 4.0;
/// Slow start adds this to the in-flight limit per answer while the limit is full: half
/// as much again per round trip. TCP's doubling (1.0) gave more 429s where a burst
/// allowance ran dry (the window in flight when it does is refused: 0.8–2.5% of the
/// benchmark's crawls against 0.55–2.1%) for ratios at most 0.06 better; growing only
/// when a request found every slot taken took 7 s to reach 200 ms × 500/s.
const SLOW_START_WINDOW_STEP: f64 = 0.5;
/// Slow start multiplies the pace by this once per round trip.
const SLOW_START_GROWTH: f64 = 1.25;
/// Slow start grows at least this often, so a slow server does not make it crawl.
const SLOW_START_MAX_INTERVAL: Duration = Duration::from_millis(100);
/// And at most this often: against a fast server a big burst allowance hides the limit
/// until it runs dry, and the faster the pace grew meanwhile, the more requests are in
/// flight to be refused when it does.
const SLOW_START_MIN_INTERVAL: Duration = Duration::from_millis(50);
/// A 429 after at least this many answers without one is tolerated without a cut (counted
/// in answers rather than over a time window: at 50 requests a second a second's window
/// held 50 answers, and one 429 in it was already 2%).
const RARE_429: usize = 200;
/// The in-flight limit keeps this much more than the pace times the round trip.
const LITTLE_HEADROOM: f64 = 1.5;
/// Slow start stops growing a pace this many times above the rate that gets through.
const SLOW_START_LEAD: f64 = 4.0;
/// The cut a 429 makes while the limit cannot be measured yet (too few 429s).
const LIGHT_CUT: f64 = 0.97;
/// How close under a known limit (measured from 429s, or stated by the headers) the pace
/// settles: a margin for the jitter of arrivals.
const UNDER_CEILING: f64 = 0.985;
/// Each 429 episode that begins at the pace settled under a limit the headers state
/// widens the margin under it by half again (1.5%, 2.25%, 3.4%, …): the jitter of
/// arrivals needs more room than it had. At 20 ms × 200/s with a burst of one request,
/// arrivals 5.08 ms apart varied by 0.11 ms at the 99th percentile, where 98.5% of the
/// limit leaves 0.08 ms.
const MARGIN_WIDENING: f64 = 1.5;
/// The widest margin under a stated limit; narrowed again a step by every [`RARE_429`]
/// answers without a 429.
const MIN_UNDER: f64 = 0.75;
/// Above that, the pace grows by this share in the first probe interval after a 429,
/// twice as much in each quiet one after it, up to [`MAX_PROBE_STEP`].
const PROBE_STEP: f64 = 0.01;
/// The largest step of the probe above the ceiling: as fast as slow start, so that a
/// limit measured far too low (a clump of arrivals refused by a small bucket) is left
/// behind within seconds. Against a limit measured right the probe rarely gets this far:
/// the bucket the last episode emptied refuses the second or third step.
const MAX_PROBE_STEP: f64 = SLOW_START_GROWTH - 1.0;
/// Above a limit an earlier crawl found, the probe goes no further than this share above
/// it while the bucket could still be hiding it: when the bucket runs dry, what went out
/// above the limit in the round trip before the first 429 came back is refused, and that
/// is this share of the limit's round trip.
const GENTLE: f64 = 0.15;
/// Sent this many times the bucket above the remembered limit without a 429: the limit
/// is higher now.
const OUTGROWN: f64 = 1.2;
/// The most release times kept to measure the bucket's depth by (256 KiB): a deeper
/// bucket is measured as this deep, and only loses the warm start's small steps sooner.
const DEPTH_LOG: usize = 16_384;
/// An episode begun by a probe step measures the limit at least this share of the pace
/// that ran the whole interval before the step without a 429, unless the bucket is too
/// shallow to measure through: a step is at most a quarter up, and a bucket with room
/// for the pace's unevenness reads the limit. One request deep it reads about half the
/// pace that drew the 429s, since the tokens it wastes between two refusals are never
/// accepted (traced at 50 ms × 50/s: a probe from 44.6 to 55.7 a second measured 27.9,
/// and the pace fell to it, then climbed back for ten seconds, again and again). Such a
/// measure gives way to the pace that ran quietly. A limit that really fell that far as
/// the step was taken refuses requests sent at that pace too: two such 429s give the
/// floor up, and the measure is taken as it reads.
const IMPLAUSIBLE_DROP: f64 = 0.75;
/// A limit measured again within this share of the last measure is confirmed.
const SAME_MEASURE: f64 = 0.03;
/// The most probe intervals a step above a confirmed limit waits.
const MAX_PROBE_BACKOFF: f64 = 8.0;
/// Before the pair test ([`PairTest`]) its first request waits this many of the pace's
/// intervals more: a deeper bucket the last episode emptied has refilled as many tokens
/// (a few fewer when the measure read a little high), enough for both of the pair, while a
/// bucket one request deep holds one however long it waits.
const PAIR_PAUSE: f64 = 4.0;
/// A depth test's refused second reads a bucket one request deep only when the pause
/// before its pair, at the limit measured when the answers are in, refilled at least
/// this many tokens. A test armed in the crawl's first episode paused four intervals at
/// a pace the measure later put at three times the limit: 2.5 ms, little more than one
/// token, and a bucket 500 deep was read as one deep; the search over it then found
/// limits up to twice the real one and refused 2.9–10.3% of the crawl (20 ms × 500/s with
/// a second's burst, five runs in twelve). Below four, so that a test paused at a pace
/// just under the measure passes when its pair leaves a little late.
const PAUSE_REFILL: f64 = 3.0;
/// The most depth tests a crawl sends: one whose first request is refused (another
/// request's late arrival took the token) says nothing, and is sent again.
const DEPTH_TESTS: u32 = 3;
/// A pair test whose answers have not both come back this long (or four round trips, when
/// longer) after its first left or was due to, or after it was armed while it waits for a
/// slot, is given up: a depth test is sent again, a search goes on with its next round.
const PAIR_TIMEOUT: Duration = Duration::from_secs(2);
/// Against a bucket one request deep, the gap search ([`Search`]) ends when the limit is
/// known within this ratio.
const SEARCH_PRECISION: f64 = 1.015;
/// How much further apart or closer together than they left two requests are taken to
/// reach the server: a search that read its pairs as sent found limits 0.7-0.8% above a
/// limit of 200 a second, and paced at 0.992 of it; with 30 µs, 510 above one of 500, and
/// the episode that followed halved the pace (traced).
const ARRIVAL_JITTER: Duration = Duration::from_micros(50);
/// The most rounds of pair tests one gap search sends.
const SEARCH_ROUNDS: u32 = 10;
/// The most pairs of one round of a gap search ([`Search`]), sent one after another
/// without waiting for the others' answers: each pair narrows the bracket once, and a
/// round waits a round trip for its answers, so at 200-400 ms one pair a round took
/// 2-6 s at part of the limit (traced). Each costs at most one 429.
const MAX_RUNGS: u32 = 4;
/// Against a bucket one request deep, this many probe intervals after a search ends, one
/// pair a little (half of [`SEARCH_NEAR`]) above the limit found: a limit raised since (or
/// a search that ended low) is searched for again, at the cost of one 429 when it is not.
/// Every 16 intervals, with a bracket of 3%, it cost 50-a-second crawls 1% of 429s.
const SEARCH_AGAIN: u32 = 32;
/// After an episode over a bucket one request deep, the search starts from this share of
/// the limit it had found.
const RESEARCH_FROM: f64 = 0.95;
/// The first search's bracket reaches at least this far above the pace the first 429s
/// came at: the measure may read much less than half the limit (its span reaching back
/// into slow start's slower paces), and at 400 ms × 500/s a bracket of 2.1 times a measure
/// of 151 a second topped out at 318.
const SEARCH_NEAR_PACE: f64 = 1.1;
/// While no pair has been refused, an accepted one this close under the top of the
/// bracket doubles it: the top was a guess (the search crept up to 313 of a guessed 318,
/// its ten pairs spent).
const SEARCH_EXPAND: f64 = 1.1;
/// The bracket above the limit found that such a search starts with: refused, its pair
/// leaves the limit known within [`SEARCH_PRECISION`] at 200 a second or less, jitter and
/// all, and the search ends at one 429 (from 3% it sent a second pair, as it still does at
/// 500 a second, where [`ARRIVAL_JITTER`] is 2.5% of a gap).
const SEARCH_NEAR: f64 = 1.02;
/// A limit measured from a pace refused every other request is less than this many times
/// the measure (the pace is less than twice a bucket one request deep's limit when it
/// measures half of it), with room for the measure's error.
const SEARCH_TOP: f64 = 2.1;
/// Against a bucket one request deep, a 429 whose window measures the limit at this share
/// of the pace or more (or cannot measure it) is the jitter of arrivals: a pace over such
/// a bucket's limit is refused every other request, which measures half the pace.
/// So is one that comes more than [`LONE_429`] answers after the last: right after a
/// search raised the pace, the window reaches back into the slower one and measured 60%
/// of it (traced at 20 ms × 500/s: the search began again from 462, and ended there).
const JITTER_MEASURE: f64 = 0.75;
/// See [`JITTER_MEASURE`]: a pace over a bucket one request deep draws a 429 every other
/// answer.
const LONE_429: usize = 2;
/// ... unless this share of the window's answers or more were refused: a pace just over
/// such a bucket's limit, with arrivals jittered, is refused less than every other
/// request, and measures between half the pace and all of it (traced at 20 ms × 500/s: a
/// search that found 516 against 500 drew 437 429s, 5%, all taken for jitter).
const JITTER_SHARE: f64 = 0.03;
/// The bracket a search begins with when a fresh crawl's depth test (its second and
/// third requests, sent back to back) finds the bucket one request deep: from the pace of
/// the moment to this many times it. Wide, since nothing but that pace is known yet: a
/// first round of four pairs across it reaches a limit 16 times the pace, and each pair
/// costs at most one 429.
const START_SEARCH_SPAN: f64 = 32.0;
/// The shortest probe interval; it is two round trips when those are longer.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// No step above a known limit while fewer requests wait at the gate than the pace sends
/// in this long: the crawl is about to end.
const PROBE_LINE: Duration = Duration::from_secs(2);
/// A search for a bucket one request deep's limit sends no more rounds once the crawl is
/// ending ([`PROBE_LINE`]) and its bracket is narrower than this ratio.
const ENDING_BRACKET: f64 = 1.25;
/// The window the rate of successes is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Fewer successes than this in the window say nothing about the server's limit.
const MIN_RATE_SAMPLE: usize = 20;
/// The shortest window of sends the limit is measured over; four round trips when longer.
const MEASURE_WINDOW: Duration = Duration::from_secs(1);
/// Accepted requests between two 429s that make a measure worth acting on (±1 of a
/// count this size is ±20%: a first rough measure, refined by every later 429).
const MIN_MEASURE: usize = 2;
/// Accepted requests between two 429s that make a measure precise enough (±2.5%): the
/// measure uses the most recent span with this many, so a limit that drops is followed
/// within a few dozen requests instead of a whole window.
const GOOD_MEASURE: usize = 40;

#[derive(Debug)]
struct GateState {
    /// The in-flight limit (fractional so that it can grow by less than one per success).
    limit: f64,
    in_flight: usize,
    /// A request waited for a free slot since the limit last grew.
    concurrency_bound: bool,
    /// Requests holding a slot while they wait for their paced start time.
    slot_waiters: usize,
    /// [`Queue::Front`] requests waiting for a slot: while there are any, a free slot is
    /// theirs.
    front_waiters: usize,
    /// Requests waiting at the gate, for a slot or for their paced start: the work left
    /// that the pace can still speed up.
    in_line: usize,
    /// A request waited for its paced slot since the pace last grew.
    pace_bound: bool,
    /// Until the first 429 or latency rise, growth is fast.
    slow_start: bool,
    /// Round-trip time EWMAs in seconds: short reacts within a few answers, long within
    /// a few hundred.
    rtt_short: Option<f64>,
    rtt_long: Option<f64>,
    last_shrink: Option<Instant>,
    /// Requests per second; `None` = unpaced.
    pace: Option<f64>,
    /// The start time last handed out: the next is spaced from it at the pace of the
    /// moment it is handed out, so that a cut pace spaces the very next request (spaced
    /// ahead at the old pace, it left on its predecessor's heels and was refused by a
    /// shallow bucket, traced at 50 ms × 50/s).
    last_slot: Option<Instant>,
    /// No start before this: the headers said the budget is empty until then.
    hold_until: Option<Instant>,
    /// When the last request actually left: a timer that fires late releases the
    /// requests due meanwhile together, which a small burst allowance refuses.
    last_release: Option<Instant>,
    /// The best known limit: measured from 429s, or the headers' limit, or a rate above
    /// it that the probe reached without a 429.
    ceiling: Option<f64>,
    /// The rate the last rate-limit headers stated, in requests per second.
    header_rate: Option<f64>,
    /// How close under a known limit the pace settles: [`UNDER_CEILING`], widened by
    /// [`MARGIN_WIDENING`] for each 429 episode at that pace under a stated limit.
    under: f64,
    /// A 429 has shown the server's bucket too shallow to absorb the jitter of arrivals
    /// (refused under a stated limit, or measured far under a pace that ran quietly): past
    /// slow start, a backlog then leaves a whole interval apart (see [`RELEASE_SPACING`]).
    shallow: bool,
    /// The ceiling is a rate assumed from an earlier crawl that no header has stated yet.
    assumed: bool,
    /// The pair test being formed, if any ([`PairTest`]).
    pair: PairTest,
    /// Pair tests given their slots, whose second has not left yet.
    slotted: Vec<SlottedPair>,
    /// Pair tests whose requests have both left, waiting for their answers.
    flying: Vec<SentPair>,
    /// The pair test found the bucket one request deep: a 429 that measures no limit
    /// under the pace is the jitter of arrivals, and neither cuts the pace nor starts the
    /// probe's steps over; the limit is searched for by pairs, never by the probe.
    one_deep: bool,
    /// The search for a bucket one request deep's limit, while it goes on.
    search: Option<Search>,
    /// A crawl has begun, and its first depth test is armed at its next slot but the
    /// first while slow start knows no limit ([`GateState::first_depth_test`]).
    first_test_due: bool,
    /// Depth tests sent in this crawl.
    depth_tests: u32,
    /// When the last search for a bucket one request deep's limit ended.
    searched_at: Option<Instant>,
    /// How much later than meant the last pair's second left after its first, in
    /// seconds: the next gap is meant that much shorter, so that it leaves as meant (a
    /// timer wakes a little late, and every accepted pair raised the low end by less than
    /// the search meant).
    pair_lag: f64,
    /// The rate and burst allowance an earlier crawl found, while this crawl has not
    /// measured the limit itself: with them, the requests sent above the rate are counted
    /// against the allowance, as the server's bucket counts them.
    remembered: Option<Remembered>,
    /// Release times of this crawl's requests up to its first 429 (the newest
    /// [`DEPTH_LOG`]): where the server's bucket ran dry, which
    /// [`GateState::measured_depth`] reads.
    sends: VecDeque<Instant>,
    /// The earliest send of this crawl that was refused.
    first_refused: Option<Instant>,
    /// When the last 429 episode began: answers to requests sent before it are part of
    /// the same episode and only refine its measure.
    last_cut: Option<Instant>,
    /// The pace when the current 429 episode began.
    episode_pace: f64,
    /// The fastest pace an episode of this crawl began at.
    peak_episode_pace: f64,
    /// The pace that ran a whole probe interval without a 429 before the probe's latest
    /// step, until a 429 episode begins.
    sustained: Option<f64>,
    /// The least the limit can plausibly be ([`IMPLAUSIBLE_DROP`]): the sustained pace,
    /// when a probe step above it began a 429 episode. Kept through the 429s of requests
    /// that left at a faster pace before the cut reached them; given up at the second 429
    /// of a request that left after it (the limit did fall), and at the next quiet step.
    floor: Option<f64>,
    /// The last start time handed out before the pace was cut to the floor.
    floor_from: Option<Instant>,
    /// 429s of requests that left after [`GateState::floor_from`].
    floor_misses: u32,
    /// The share the next probe above the ceiling raises the pace by.
    probe_step: f64,
    /// How many probe intervals each step above the ceiling waits: doubled each time
    /// a 429 episode measures the same limit again, back to one when it measures another.
    probe_backoff: f64,
    /// The latest measure of the limit, which the next episode's first is compared with.
    last_measure: Option<f64>,
    /// The current 429 episode has been compared with the last one.
    episode_measured: bool,
    /// Answers since the last 429.
    since_refused: usize,
    last_probe: Instant,
    /// Success times over the last [`RATE_WINDOW`], to measure the rate that got through
    /// while unpaced.
    recent: VecDeque<Instant>,
    /// Send times of the answered requests over the last measure window, and whether
    /// each was refused (429): what [`GateState::measured_limit`] reads.
    answered: VecDeque<(Instant, bool)>,
    /// Send times of the requests released and not answered yet (how many left at each
    /// instant): what [`GateState::measured_limit`] counts as accepted.
    unanswered: BTreeMap<Instant, u32>,
}

/// Two requests sent a set gap apart, the first to a full bucket: what their answers say
/// of the server's bucket.
///
/// Against a bucket one request deep a pace above the limit is refused every other
/// request, whatever its depth would let through: the tokens that come back while one
/// waits for the next arrival are lost, so the limit measures about half the pace that
/// drew the 429s (235 a second at 500, traced), and the probe took 5-20 s to climb back,
/// each 429 of a clump of arrivals cutting it again. A deeper bucket run dry by the same
/// pace measures right, and reads the same in one episode. So once per crawl without
/// headers, after the first measure, a pause of [`PAIR_PAUSE`] intervals and two requests
/// back to back: a bucket one deep refuses the second; a deeper one, refilled by the
/// pause, accepts both. One deep, the limit is then found by pairs a gap apart, the first
/// leaving a pace's interval after the request before, so to a full bucket: the second is
/// accepted when the gap is at least the time one token takes to come back, and refused
/// otherwise ([`Search`]). Each costs at most one 429, where a step of the probe above
/// such a bucket's limit costs half of a round trip's requests. A second's 429 is the
/// test's answer, not an episode.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PairTest {
    /// Not run in this crawl yet.
    Untested,
    /// The next slot handed out is the pair's first; the one after it is `gap` later.
    Armed { since: Instant, gap: Duration },
    /// None armed: the last one armed has its slots ([`GateState::slotted`]), has left
    /// ([`GateState::flying`]), was answered, or given up, or none was worth running.
    Done,
}

/// A pair test ([`PairTest`]) given its first slot: the slots as handed out (the second
/// `gap` after the first, unless no request asked for one until later), when the first
/// left, and its answer (which can come before the second leaves: a gap longer than the
/// round trip).
#[derive(Clone, Copy, Debug, PartialEq)]
struct SlottedPair {
    gap: Duration,
    first_slot: Instant,
    second_slot: Option<Instant>,
    first: Option<Instant>,
    /// How long before the first the request ahead of it left.
    pause: Option<Duration>,
    first_refused: Option<bool>,
    /// The crawl's first depth test ([`GateState::first_depth_test`]).
    first_test: bool,
}

impl SlottedPair {
    /// What its answers are awaited from: when its first left, or is due to. Slots are
    /// handed out ahead, up to a second or two at 400 ms (traced): counted from the
    /// arming, pairs not yet sent were given up.
    fn due(&self) -> Instant {
        self.first.unwrap_or(self.first_slot)
    }
}

/// A pair test ([`PairTest`]) whose two requests have both left: their answers so far
/// (true = refused).
#[derive(Clone, Copy, Debug, PartialEq)]
struct SentPair {
    /// The gap meant between the two (none: the depth test).
    gap: Duration,
    first: Instant,
    second: Instant,
    /// How long before the first the request ahead of it left (`None`: none had).
    pause: Option<Duration>,
    first_refused: Option<bool>,
    second_refused: Option<bool>,
    /// The crawl's first depth test ([`GateState::first_depth_test`]).
    first_test: bool,
}

impl PairTest {
    /// When the test was armed, while it waits for its first slot.
    fn since(self) -> Option<Instant> {
        match self {
            Self::Armed { since, .. } => Some(since),
            Self::Untested | Self::Done => None,
        }
    }
}

/// The limit of a bucket one request deep, searched for by pair tests ([`PairTest`]):
/// between `low`, which a pair that far apart was accepted at (or a measure), and `high`,
/// which one was refused at (or the pace an episode began at). Each round sends its pairs
/// at rates spread evenly (geometrically) across the bracket as the round began, one
/// after another: `k` pairs narrow it `k + 1`-fold in one round trip.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Search {
    low: f64,
    high: f64,
    /// Whether `high` is only a guess (from the measure, or the pace an episode began at),
    /// no pair refused under it yet.
    high_guessed: bool,
    rounds: u32,
    /// The round under way.
    round: Option<Round>,
}

/// One round of a gap search: the bracket it spreads its pairs across, how many, and how
/// many have been armed.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Round {
    low: f64,
    high: f64,
    rungs: u32,
    armed: u32,
    since: Instant,
}

impl Search {
    /// A search between `low` and a `high` that is only a guess.
    fn new(low: f64, high: f64) -> Self {
        Self {
            low,
            high,
            high_guessed: true,
            rounds: 0,
            round: None,
        }
    }
}

/// The ratio a gap search can know a limit near `rate` within: [`SEARCH_PRECISION`], or
/// what [`ARRIVAL_JITTER`] leaves of a pair's gap when that is wider (accepted, a pair says
/// a token per the gap and the jitter; refused, per the gap less it). At 200 a second the
/// jitter alone is 2%, and a search held to 1.5% sent all its rounds (traced); at 500 it
/// is 5%, and 1.5% beyond that ended searches 7% under the limit.
fn resolution(rate: f64) -> f64 {
    let jitter = (ARRIVAL_JITTER.as_secs_f64() * rate).min(0.5);
    SEARCH_PRECISION.max((1.0 + jitter) / (1.0 - jitter))
}

/// What an earlier crawl found of the server's bucket, and how far this crawl has drawn
/// it down.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    /// Requests a second.
    rate: f64,
    /// Requests the bucket holds.
    depth: f64,
    /// Requests sent above `rate` since the bucket was last full (a model of the server's
    /// bucket: never below zero).
    drawn: f64,
    drawn_at: Option<Instant>,
}

impl Remembered {
    /// One request left at `now`: a token spent, and the bucket refilled at `rate` since
    /// the last one.
    fn sent(&mut self, now: Instant) {
        let refill = self.drawn_at.map_or(0.0, |at| {
            now.saturating_duration_since(at).as_secs_f64() * self.rate
        });
        self.drawn = (self.drawn - refill).max(0.0) + 1.0;
        self.drawn_at = Some(now);
    }

    /// The bucket would be empty by now if the limit were still `rate`: no 429 means it
    /// is not.
    fn outgrown(&self) -> bool {
        self.drawn > self.depth * OUTGROWN + 2.0
    }
}

/// What one answer's rate-limit headers say (`x-ratelimit-*-requests`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct RateHeaders {
    /// Requests allowed per minute.
    limit_per_minute: f64,
    /// Requests left before the limit is reached.
    remaining: Option<f64>,
    /// Until the budget is whole again.
    reset: Option<Duration>,
}

impl GateState {
    /// A gate's state before it knows anything of the server.
    fn new(max: usize, adaptive: bool) -> Self {
        Self {
            limit: (if adaptive { max.min(START_LIMIT) } else { max }) as f64,
            in_flight: 0,
            concurrency_bound: false,
            slot_waiters: 0,
            front_waiters: 0,
            in_line: 0,
            pace_bound: false,
            slow_start: adaptive,
            rtt_short: None,
            rtt_long: None,
            last_shrink: None,
            pace: adaptive.then_some(START_PACE),
            last_slot: None,
            hold_until: None,
            last_release: None,
            ceiling: None,
            header_rate: None,
            under: UNDER_CEILING,
            shallow: false,
            assumed: false,
            pair: PairTest::Untested,
            slotted: Vec::new(),
            flying: Vec::new(),
            one_deep: false,
            search: None,
            first_test_due: false,
            depth_tests: 0,
            searched_at: None,
            pair_lag: 0.0,
            remembered: None,
            sends: VecDeque::new(),
            first_refused: None,
            last_cut: None,
            episode_pace: START_PACE,
            peak_episode_pace: 0.0,
            sustained: None,
            floor: None,
            floor_from: None,
            floor_misses: 0,
            probe_step: PROBE_STEP,
            probe_backoff: 1.0,
            last_measure: None,
            episode_measured: false,
            since_refused: 0,
            last_probe: Instant::now(),
            recent: VecDeque::new(),
            answered: VecDeque::new(),
            unanswered: BTreeMap::new(),
        }
    }

    // A float-to-integer `as` saturates, and the limit is kept at 1 or more.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn limit_now(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// Whether start times are handed out as far ahead as [`SLOT_HORIZON`] allows: a
    /// request that would take the next waits for the next release. Only while a request
    /// waits for its start time, whose release wakes it.
    fn booked_ahead(&self, now: Instant) -> bool {
        let (Some(pace), Some(last)) = (self.pace, self.last_slot) else {
            return false;
        };
        let horizon = SLOT_HORIZON.max(Duration::from_secs_f64(SLOT_HORIZON_SLOTS / pace));
        self.slot_waiters > 0 && last > now + horizon
    }

    fn rtt(&self) -> Duration {
        Duration::from_secs_f64(self.rtt_short.unwrap_or(0.0))
    }

    fn prune(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
        let window = MEASURE_WINDOW.max(4 * self.rtt());
        // Answers come back roughly in send order; a straggler left behind the front
        // is dropped with it a little later.
        while self
            .answered
            .front()
            .is_some_and(|(sent, _)| now.saturating_duration_since(*sent) > window)
        {
            self.answered.pop_front();
        }
    }

    /// Records an answer the server counted against its limit (anything but a 429 is
    /// taken to have spent a token).
    fn record(&mut self, sent: Instant, refused: bool, now: Instant) {
        self.settle(sent);
        self.answered.push_back((sent, refused));
        self.since_refused = if refused { 0 } else { self.since_refused + 1 };
        // Each stretch of [`RARE_429`] answers without a 429 narrows a widened margin a
        // step again: a stall of tens of milliseconds early in a crawl (traced to a
        // large answer built and parsed on async workers, since moved off them) refuses
        // a clump of arrivals, and a margin widened for that alone held the rest of the
        // crawl at three quarters of the limit (traced, 20 ms × 200/s).
        if self.since_refused > 0 && self.since_refused.is_multiple_of(RARE_429) {
            self.under = (1.0 - (1.0 - self.under) / MARGIN_WIDENING).min(UNDER_CEILING);
        }
        self.prune(now);
    }

    /// Counts the answer to a request released at `sent` when it is one of a pair test's
    /// ([`PairTest`]), and acts on the test's result once both are in. True for the
    /// second's 429, which is the test's answer and nothing more.
    fn pair_answer(&mut self, sent: Instant, refused: bool, now: Instant) -> bool {
        if let Some(pair) = self
            .slotted
            .iter_mut()
            .find(|pair| pair.first == Some(sent))
        {
            pair.first_refused = Some(refused);
            return false;
        }
        let Some(index) = self
            .flying
            .iter()
            .position(|pair| pair.first == sent || pair.second == sent)
        else {
            return false;
        };
        let pair = &mut self.flying[index];
        let is_second = sent == pair.second && sent != pair.first;
        if is_second {
            pair.second_refused = Some(refused);
        } else {
            pair.first_refused = Some(refused);
        }
        let pair = *pair;
        // The crawl's first depth test ([`GateState::first_depth_test`]): its two requests
        // race on new connections, and either can reach the bucket first (two runs in three
        // at 400 ms); the bucket is full at a crawl's start, so one refused, whichever,
        // is the test's answer.
        let first_test = pair.first_test;
        // Both answers, before the pair is read: the second's 429 is the test's either way.
        if let (Some(first_refused), Some(second_refused)) =
            (pair.first_refused, pair.second_refused)
        {
            self.flying.swap_remove(index);
            if first_test && first_refused != second_refused {
                self.pair_result(pair, true, now);
            } else if first_refused {
                // The bucket was not full when the first arrived: the test says nothing.
                tracing::trace!("pair test: the first refused");
                self.pair_inconclusive(now);
            } else {
                self.pair_result(pair, second_refused, now);
            }
        }
        (is_second || first_test) && refused
    }

    /// What a `pair` says, its first accepted and its second `refused` or not.
    fn pair_result(&mut self, pair: SentPair, refused: bool, now: Instant) {
        let gap = pair
            .second
            .saturating_duration_since(pair.first)
            .as_secs_f64();
        let Some(mut search) = self.search else {
            // A search's pair answered after the search ended says nothing more.
            if !pair.gap.is_zero() {
                return;
            }
            // The depth test: only a bucket one deep refuses the second.
            self.pair = PairTest::Done;
            if pair.first_test {
                self.first_depth_test(refused, now);
                return;
            }
            if refused && let Some(ceiling) = self.ceiling {
                // Too short a pause for the limit as measured by now: a deeper bucket had
                // no room for both.
                let refill = pair
                    .pause
                    .map_or(f64::INFINITY, |pause| pause.as_secs_f64() * ceiling);
                if refill < PAUSE_REFILL {
                    tracing::trace!(refill, "depth test: too short a pause");
                    self.pair_inconclusive(now);
                    return;
                }
                self.shallow = true;
                self.one_deep = true;
                // The fastest pace that drew 429s (slow start's, often) was over the limit,
                // unless they were a clump's; the measure's bound covers that. From the
                // last episode's pace alone, a measure reaching back into slow start
                // left the top at 172 against 200 (traced at 400 ms).
                self.search = Some(Search::new(
                    ceiling,
                    (ceiling * SEARCH_TOP).max(
                        (self.episode_pace.max(self.peak_episode_pace) * SEARCH_NEAR_PACE)
                            .min(ceiling * SEARCH_TOP * 2.0),
                    ),
                ));
                tracing::debug!(
                    ceiling,
                    "a bucket one request deep: searching for its limit"
                );
                self.next_round(now);
            }
            return;
        };
        // The pair reached the bucket up to [`ARRIVAL_JITTER`] further apart or closer
        // together than it left: accepted, the limit is at least one token per the longest
        // gap it can have arrived at; refused, less than one per the shortest.
        let jitter = ARRIVAL_JITTER.as_secs_f64();
        if gap > jitter {
            if refused {
                let rate = 1.0 / (gap - jitter);
                // Refused under a rate a pair was accepted at says the first did not find
                // the bucket full (a clump of arrivals): nothing of the limit.
                if rate < search.high && rate > search.low {
                    search.high = rate.max(search.low);
                    search.high_guessed = false;
                }
            } else if 1.0 / (gap + jitter) >= search.high && !search.high_guessed {
                // Accepted above a rate a pair was refused at: one of the two arrived
                // further apart or closer together than the jitter allows for (a pair
                // 4.73 ms apart was accepted against 200 a second, traced at 400 ms), and
                // which is not known. The low end stays, the bracket above it is tried
                // again.
                search.high = SEARCH_EXPAND / (gap + jitter);
                search.high_guessed = true;
            } else if 1.0 / (gap + jitter) > search.low {
                search.low = 1.0 / (gap + jitter);
                // Accepted close to a bound no pair has shown, or at the round's top
                // rung: the bound was wrong (a first bracket from a measure that reached
                // back into slow start spent two rounds under a third of the way to the
                // limit, traced at 400 ms × 200/s).
                let top_rung = search.round.is_some_and(|round| {
                    let share = f64::from(round.rungs) / f64::from(round.rungs + 1);
                    search.low * resolution(search.low)
                        >= round.low * (round.high / round.low).powf(share)
                });
                // Never below a wider guess ([`START_SEARCH_SPAN`]): with one pair a
                // round, its top rung is the bracket's middle.
                if search.high_guessed && (search.low * SEARCH_EXPAND >= search.high || top_rung) {
                    search.high = search.high.max(search.low * SEARCH_TOP);
                }
                search.high = search.high.max(search.low);
            }
        }
        self.search = Some(search);
        let settled = search.low * self.under;
        self.ceiling = Some(search.low);
        self.last_measure = Some(search.low);
        self.pace = Some(settled);
        tracing::trace!(
            gap,
            low = search.low,
            high = search.high,
            refused,
            "pair test"
        );
        self.pair_settled(now);
    }

    /// What the crawl's depth test, its second and third requests sent back to back
    /// while slow start has measured nothing, says ([`Gate::start_crawl`]). One of the
    /// two `refused`: the bucket is one request deep, slow start ends, and pairs search
    /// for the limit from the pace of the moment up, the pace following the low end as it
    /// rises, never above the limit, and the in-flight window following the pace. Slow
    /// start had found the limit by running over it, and against a bucket this shallow
    /// its ramp ended early: released as answers freed slots, its requests left in clumps
    /// at the pace, four times what got through, and the first 429s came at a third of
    /// the limit (traced at 400 ms × 500/s: the limit was found 5.4 s into the crawl; with
    /// this search, 1.5 s). Both accepted (or with headers, which state the limit), slow
    /// start goes on, and the depth test is asked again after the first measure, as
    /// without this one. So too when, by its answer, a limit has been measured or another
    /// request was refused: the bucket need not have been full when the two left (on a
    /// loaded machine they can leave late; a bucket 60 deep was read as one deep, in CI).
    fn first_depth_test(&mut self, refused: bool, now: Instant) {
        let pace = self.pace.unwrap_or(START_PACE);
        let full = self.ceiling.is_none() && self.first_refused.is_none();
        if !(refused && full && self.slow_start && self.header_rate.is_none()) {
            self.pair_inconclusive(now);
            return;
        }
        self.shallow = true;
        self.one_deep = true;
        self.slow_start = false;
        self.search = Some(Search::new(pace, pace * START_SEARCH_SPAN));
        tracing::debug!(
            pace,
            "a bucket one request deep from the first requests: searching for its limit"
        );
        self.next_round(now);
    }

    /// A pair test said nothing: the search goes on, and the depth test is sent again at
    /// once while it has tries left. Its first is refused when a clump sent at the pace
    /// before a cut still reaches the bucket; by the time that answer is in, the requests
    /// leaving are spaced at the cut pace. Left to the probe's next turn, which waits for
    /// a quiet interval, the crawl ran 1.5 s more at a third of the limit (traced at
    /// 400 ms × 200/s).
    fn pair_inconclusive(&mut self, now: Instant) {
        if self.search.is_some() {
            self.pair_settled(now);
        } else if !self.one_deep {
            self.pair = PairTest::Untested;
            if self.pair_test_worth_it() {
                self.arm_depth_test(now);
            }
        }
    }

    /// An episode over a bucket one request deep (a pace over its limit, refused every
    /// other request): search again, between the episode's `measured` half and its pace.
    /// From a little under the limit the last search found (`before`), unless the pace
    /// fell under that: the measure's half is far too low to start from, and a limit that
    /// fell further is refused again.
    fn search_again(&mut self, measured: f64, before: Option<f64>, now: Instant) {
        let low = before.map_or(measured, |before| {
            measured.max((before * RESEARCH_FROM).min(self.episode_pace * RESEARCH_FROM))
        });
        // The pace is no firm bound: a clump of arrivals (a stall) can be refused every
        // other request under the limit too.
        self.search = Some(Search::new(low, self.episode_pace.max(low)));
        self.ceiling = Some(low);
        self.pace = Some((low * self.under).min(self.episode_pace));
        self.next_round(now);
    }

    /// A search's pair is answered, or void: the next round begins once all of this
    /// round's pairs have left and been answered.
    fn pair_settled(&mut self, now: Instant) {
        let round_sent = self
            .search
            .is_some_and(|search| search.round.is_none_or(|round| round.armed >= round.rungs));
        if round_sent
            && self.pair == PairTest::Done
            && self.slotted.is_empty()
            && self.flying.is_empty()
        {
            self.next_round(now);
        }
    }

    /// Begins the search's next round of pair tests, or ends the search when it knows the
    /// limit closely enough (or has sent its rounds).
    fn next_round(&mut self, now: Instant) {
        self.pair = PairTest::Done;
        let Some(mut search) = self.search else {
            return;
        };
        // A search sends one round at least: the re-search's bracket is narrower than the
        // resolution, and is a test of a raised limit. No more once the crawl is ending
        // and the bracket is narrow: a refused second's Retry-After is waited out after
        // the other requests are done (traced at 400 ms × 200/s: a pair refused 1 s before
        // the end, 2% under the top, and the crawl ended on its retry), and the pace, at
        // the low end, is close enough for what is left. A wide bracket is still searched:
        // a crawl whose line of requests is short throughout (one long list paged in a
        // row) would otherwise run at the measure, half the limit.
        let known = search.high <= search.low * resolution(search.high);
        let ending = self.pace.is_some_and(|pace| self.ending(pace))
            && search.high <= search.low * ENDING_BRACKET;
        if ending || (search.rounds > 0 && (known || search.rounds >= SEARCH_ROUNDS)) {
            self.search = None;
            self.searched_at = Some(now);
            tracing::debug!(limit = search.low, "a bucket one request deep: limit found");
            return;
        }
        search.rounds += 1;
        search.round = Some(Round {
            low: search.low,
            high: search.high,
            rungs: self.rungs(search.low, search.high),
            armed: 0,
            since: now,
        });
        self.search = Some(search);
        self.arm_rung(now);
    }

    /// How many pairs a round between `low` and `high` sends: as many as leave in half a
    /// round trip at the pace (a pair waits for its answer a round trip anyway, where a
    /// round trip holds a pace's interval or two, one at a time costs no time), and no
    /// more than leave the limit known within [`SEARCH_PRECISION`] (each 429 is one more).
    // A float-to-integer `as` saturates; the value is clamped to 1..=MAX_RUNGS first.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn rungs(&self, low: f64, high: f64) -> u32 {
        let pace = self.pace.unwrap_or(low);
        let in_half_a_round_trip = (pace * self.rtt().as_secs_f64() / 2.0).floor();
        let enough = ((high / low).ln() / resolution(high).ln()).ceil() - 1.0;
        in_half_a_round_trip
            .min(enough)
            .clamp(1.0, f64::from(MAX_RUNGS)) as u32
    }

    /// Arms the round's next pair test, at the next of its rates still inside the bracket
    /// (answers already in may have settled the others); with none left, the round waits
    /// for its answers.
    fn arm_rung(&mut self, now: Instant) {
        self.pair = PairTest::Done;
        let Some(mut search) = self.search else {
            return;
        };
        let Some(mut round) = search.round else {
            return;
        };
        while round.armed < round.rungs {
            round.armed += 1;
            let share = f64::from(round.armed) / f64::from(round.rungs + 1);
            let rate = round.low * (round.high / round.low).powf(share);
            if rate > search.low && rate < search.high {
                search.round = Some(round);
                self.search = Some(search);
                self.pair = PairTest::Armed {
                    since: round.since,
                    gap: Duration::from_secs_f64((1.0 / rate - self.pair_lag).max(0.0)),
                };
                return;
            }
        }
        search.round = Some(round);
        self.search = Some(search);
        self.pair_settled(now);
    }

    /// Whether fewer requests wait at the gate than `pace` sends in [`PROBE_LINE`]: the
    /// crawl is about to end.
    fn ending(&self, pace: f64) -> bool {
        (self.in_line as f64) < pace * PROBE_LINE.as_secs_f64()
    }

    /// A request released at `sent` is on its way.
    fn released(&mut self, sent: Instant) {
        *self.unanswered.entry(sent).or_insert(0) += 1;
    }

    /// A request released at `sent` is answered, or will never be.
    fn settle(&mut self, sent: Instant) {
        if let Some(left) = self.unanswered.get_mut(&sent) {
            *left -= 1;
            if *left == 0 {
                self.unanswered.remove(&sent);
            }
        }
    }

    /// Whether [`JITTER_SHARE`] of the window's answers or more were refused, three at
    /// least (a crawl's first answers are few).
    fn often_refused(&self) -> bool {
        let refused = self.answered.iter().filter(|(_, refused)| *refused).count();
        refused >= 3 && refused as f64 >= self.answered.len() as f64 * JITTER_SHARE
    }

    /// The server's limit measured from the answers in the window: between the sends of
    /// two refused requests its bucket was empty at both ends, so the accepted requests
    /// sent between them, per second between them, is the rate it refills at (less when
    /// the bucket overflowed in between: never more, but for the ±1 of counting). The
    /// span ends at the newest 429 and reaches back to the latest 429 that leaves
    /// [`GOOD_MEASURE`] accepted requests inside it, else as far as the window goes.
    fn measured_limit(&self) -> Option<f64> {
        let mut sends: Vec<(Instant, bool)> = self.answered.iter().copied().collect();
        // A request still unanswered when one sent after it was refused was accepted: a
        // refusal comes back no later than an acceptance, and sooner from a gateway that
        // refuses before the API does any work. Left out, the accepted requests of the
        // span were still on their way when its 429s came back, and a limit of 500 a
        // second measured 5 (traced with 429s answered in 20 ms and successes in 400).
        if let Some((oldest, _)) = self.answered.front() {
            sends.extend(
                self.unanswered
                    .range(*oldest..)
                    .flat_map(|(sent, left)| std::iter::repeat_n((*sent, false), *left as usize)),
            );
        }
        sends.sort_by_key(|(sent, _)| *sent);
        let (last, _) = *sends.iter().rev().find(|(_, refused)| *refused)?;
        let mut accepted = 0usize;
        let mut best = None;
        for (sent, refused) in sends.iter().rev().filter(|(sent, _)| *sent < last) {
            if !refused {
                accepted += 1;
                continue;
            }
            let span = last.saturating_duration_since(*sent).as_secs_f64();
            if accepted >= MIN_MEASURE && span > 0.0 {
                best = Some(accepted as f64 / span);
                if accepted >= GOOD_MEASURE {
                    break;
                }
            }
        }
        best
    }

    /// How many requests the server's bucket held when this crawl began, measured where it
    /// first ran dry: the bucket was empty at the first refused send, and on its last full
    /// moment before it held exactly what was sent since beyond the refill at the limit.
    /// Never less than that for any moment before, so it is the largest such excess. A
    /// bucket partly drawn down when the crawl began (by another client, or a crawl just
    /// before) is measured as shallow as it was.
    fn measured_depth(&self) -> Option<f64> {
        let refused = self.first_refused?;
        let rate = self.ceiling?;
        let mut sent = 0.0;
        let mut depth: f64 = 0.0;
        for at in self.sends.iter().rev().filter(|at| **at < refused) {
            sent += 1.0;
            depth = depth.max(sent - rate * refused.saturating_duration_since(*at).as_secs_f64());
        }
        (depth >= 1.0).then_some(depth)
    }

    /// Successes per second over the window, when there are enough to mean something.
    fn observed_rate(&self, now: Instant) -> Option<f64> {
        let first = *self.recent.front()?;
        if self.recent.len() < MIN_RATE_SAMPLE {
            return None;
        }
        let span = now.saturating_duration_since(first).as_secs_f64().max(0.05);
        Some(self.recent.len() as f64 / span.min(RATE_WINDOW.as_secs_f64()))
    }

    /// The start time of the next request at the current pace (`None` = now).
    fn reserve_slot(&mut self, now: Instant) -> Option<Instant> {
        let pace = self.pace?;
        // The crawl's first depth test takes its second and third requests: a test
        // refuses one of its two, and the first request is the project list, whose
        // Retry-After the whole crawl waits for.
        let mut first_test = false;
        if self.first_test_due && self.last_slot.is_some() {
            self.first_test_due = false;
            if self.pair == PairTest::Untested && self.ceiling.is_none() && self.slow_start {
                self.pair = PairTest::Armed {
                    since: now,
                    gap: Duration::ZERO,
                };
                first_test = true;
            }
        }
        let unpaired = self
            .slotted
            .iter()
            .position(|pair| pair.second_slot.is_none());
        let spaced = match unpaired {
            // The second of a pair test's requests leaves its gap after the first's slot
            // (the depth test's gap is none: the same slot).
            Some(index) => Some(self.slotted[index].first_slot + self.slotted[index].gap),
            None => self
                .last_slot
                .map(|last| last + Duration::from_secs_f64(1.0 / pace)),
        };
        let slot = [Some(now), spaced, self.hold_until]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now);
        if slot > now {
            self.pace_bound = true;
        }
        self.last_slot = Some(slot);
        if let Some(index) = unpaired {
            self.slotted[index].second_slot = Some(slot);
            // The round's next pair takes the slots that follow, so that a round's pairs
            // leave one after another: armed as each left, a pair waited out the slots
            // handed out ahead of it, 200-400 ms apart at 400 ms (traced).
            if !self.slotted[index].gap.is_zero() {
                self.arm_rung(now);
            }
        } else if let PairTest::Armed { gap, .. } = self.pair {
            self.pair = PairTest::Done;
            self.slotted.push(SlottedPair {
                gap,
                first_slot: slot,
                second_slot: None,
                first: None,
                pause: None,
                first_refused: None,
                first_test,
            });
        }
        Some(slot)
    }

    /// When a request due now may leave: not sooner than [`RELEASE_SPACING`] of the pace's
    /// interval after the last one, or the whole interval once a bucket has shown itself
    /// shallow past slow start, whatever its slot said (`None` = now, and it is counted as
    /// released).
    fn release(&mut self, now: Instant, slot: Option<Instant>) -> Option<Instant> {
        let pace = self.pace?;
        let spacing = if self.shallow && !self.slow_start {
            1.0
        } else {
            RELEASE_SPACING
        };
        // Whichever of a pair's two requests leaves first is the first (the depth test's
        // two slots are one; a first held back by the spacing can leave after the
        // second's slot), and the other the second.
        let ours = slot.and_then(|slot| {
            self.slotted
                .iter()
                .position(|pair| pair.first_slot == slot || pair.second_slot == Some(slot))
        });
        let pair = ours.map(|index| (index, self.slotted[index]));
        let is_first = pair.is_some_and(|(_, pair)| pair.first.is_none());
        // The second of a pair test leaves its gap after the first left (not after the
        // first's slot: a late first would shorten it), and no later: that is the test.
        let earliest = match pair {
            Some((_, pair)) if !is_first => pair.first.map(|first| first + pair.gap),
            _ => self
                .last_release
                .map(|last| last + Duration::from_secs_f64(spacing / pace)),
        };
        if let Some(earliest) = earliest
            && earliest > now
        {
            return Some(earliest);
        }
        let previous = self.last_release.replace(now);
        match pair {
            Some((index, _)) if is_first => {
                self.slotted[index].first = Some(now);
                self.slotted[index].pause = previous.map(|at| now.saturating_duration_since(at));
            }
            Some((index, pair)) => {
                self.slotted.remove(index);
                let first = pair.first.unwrap_or(now);
                let apart = now.saturating_duration_since(first).as_secs_f64();
                // The depth test's pair left so far apart that a bucket one deep could
                // have refilled: it says nothing. (A search's pair is read at the gap it
                // left at.)
                if pair.gap.is_zero() && apart > 0.5 / pace {
                    self.pair_inconclusive(now);
                } else {
                    if !pair.gap.is_zero() {
                        let meant = pair.gap.as_secs_f64();
                        self.pair_lag = (apart - meant).clamp(0.0, meant / 10.0);
                    }
                    // The first's answer may be in already (a gap longer than the round
                    // trip); the pair is read when the second's is.
                    self.flying.push(SentPair {
                        gap: pair.gap,
                        first,
                        second: now,
                        pause: pair.pause,
                        first_refused: pair.first_refused,
                        second_refused: None,
                        first_test: pair.first_test,
                    });
                }
            }
            None => {}
        }
        if let Some(remembered) = self.remembered.as_mut() {
            remembered.sent(now);
        }
        // With headers the next crawl paces by them, and never needs the depth.
        if self.first_refused.is_none() && self.header_rate.is_none() {
            if self.sends.len() >= DEPTH_LOG {
                self.sends.pop_front();
            }
            self.sends.push_back(now);
        }
        None
    }

    /// The pace when a probe interval has passed quietly: back to just under the ceiling,
    /// then 1% a probe above it.
    fn probe(&mut self, now: Instant) {
        let Some(pace) = self.pace else { return };
        // The pair tests under way hold the probe, which would change what they measure;
        // those whose answers do not come are given up.
        let under_way = self
            .pair
            .since()
            .into_iter()
            .chain(self.slotted.iter().map(SlottedPair::due))
            .chain(self.flying.iter().map(|pair| pair.first))
            .min();
        if let Some(since) = under_way {
            if now.saturating_duration_since(since) < PAIR_TIMEOUT.max(4 * self.rtt()) {
                return;
            }
            tracing::trace!(
                pair = ?self.pair,
                slotted = ?self.slotted,
                flying = ?self.flying,
                "pair test: given up"
            );
            self.pair = PairTest::Done;
            self.slotted.clear();
            self.flying.clear();
            // A search goes on with its next round (its rounds are counted): given up, the
            // crawl waited [`SEARCH_AGAIN`] probe intervals at the low end (26 s, traced).
            if self.search.is_some() {
                self.next_round(now);
            } else {
                self.pair_inconclusive(now);
            }
            return;
        }
        let interval = PROBE_INTERVAL.max(2 * self.rtt());
        let quiet = self
            .last_cut
            .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        let target = self.ceiling.map(|c| c * self.under);
        let climbing = target.is_some_and(|target| pace < target * 0.995);
        // Climbing back under a known limit costs nothing; a step above it costs the
        // 429s that end it, so above it a limit confirmed again and again is probed
        // less and less often.
        let wait = if climbing {
            interval
        } else {
            interval.mul_f64(self.probe_backoff)
        };
        // A step above the limit pays back only while the crawl goes on at the higher
        // rate. With fewer requests in line than the pace sends in [`PROBE_LINE`], the
        // crawl is ending: the step could buy nothing, and each of its 429s would wait out
        // its Retry-After after the last of the other requests (traced: a crawl that
        // starts at a known limit ended 1 s late, on the retries of its last episode).
        let ending = self.ending(pace);
        if !quiet
            || now.saturating_duration_since(self.last_probe) < wait
            || !self.pace_bound
            || (ending && !climbing)
        {
            return;
        }
        self.last_probe = now;
        self.pace_bound = false;
        if !climbing && self.pair_test_worth_it() {
            self.arm_depth_test(now);
            return;
        }
        // A bucket one request deep refuses half a round trip's requests for any step
        // above its limit: the pair tests find it instead.
        if self.one_deep && !climbing {
            let again = interval * SEARCH_AGAIN;
            if let Some(ceiling) = self.ceiling
                && self
                    .searched_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= again)
            {
                self.search = Some(Search::new(ceiling, ceiling * SEARCH_NEAR));
                self.next_round(now);
            }
            return;
        }
        let mut next = match target {
            Some(target) if climbing => pace + (target - pace) / 2.0,
            _ => {
                // Each quiet probe doubles the step, up to [`MAX_PROBE_STEP`]: a limit that
                // was measured low (a bucket too small to measure through) or has since
                // been raised is found within seconds, not minutes.
                let step = self.probe_step;
                self.probe_step = (step * 2.0).min(MAX_PROBE_STEP);
                pace * (1.0 + step)
            }
        };
        // Above a limit an earlier crawl found, the bucket hides the limit until it runs
        // dry, and then every request sent in the last round trip above the limit is
        // refused: the faster the probe went meanwhile, the more (traced at 200 ms x
        // 500/s with a second's burst: 499 to 1,619 a second before the first 429 came
        // back, 149 refused). So the step stays small until more has been sent above the
        // limit than the bucket held; no 429 by then says the limit is higher now.
        if let Some(remembered) = self.remembered
            && !climbing
        {
            if remembered.outgrown() {
                self.remembered = None;
            } else {
                next = next.min(remembered.rate * (1.0 + GENTLE));
            }
        }
        // The headers state the limit; going above it can only earn 429s.
        if let Some(stated) = self.header_rate {
            next = next.min(stated * self.under);
        }
        // A rate above the old ceiling that drew no 429: the ceiling was too low.
        if let Some(ceiling) = self.ceiling
            && next > ceiling
        {
            self.ceiling = Some(next);
        }
        self.sustained = Some(pace);
        self.floor = None;
        self.floor_from = None;
        self.pace = Some(next.max(pace));
        tracing::trace!(pace = next.max(pace), limit = self.limit, "probe");
    }

    /// Arms the depth test ([`PairTest`]): its pair leaves [`PAIR_PAUSE`] intervals after the
    /// last slot handed out.
    fn arm_depth_test(&mut self, now: Instant) {
        let Some(pace) = self.pace else { return };
        let pause = Duration::from_secs_f64(PAIR_PAUSE / pace);
        self.last_slot = Some(self.last_slot.map_or(now, |last| last.max(now)) + pause);
        self.pair = PairTest::Armed {
            since: now,
            gap: Duration::ZERO,
        };
        self.depth_tests += 1;
        tracing::trace!(pace, "depth test");
    }

    /// Whether to run the pair test now ([`PairTest`]): once per crawl, after a limit
    /// measured from 429s (not stated by headers, nor assumed from an earlier crawl).
    fn pair_test_worth_it(&self) -> bool {
        self.pair == PairTest::Untested
            && self.depth_tests < DEPTH_TESTS
            && self.header_rate.is_none()
            && !self.assumed
            && self.remembered.is_none()
            && self.ceiling.is_some()
    }

    /// Slow start: a quarter more pace per round trip while requests wait for their slots.
    fn slow_start_pace(&mut self, now: Instant) {
        let Some(pace) = self.pace else { return };
        let interval = self
            .rtt()
            .clamp(SLOW_START_MIN_INTERVAL, SLOW_START_MAX_INTERVAL);
        // A pace far above what gets through is not what holds requests back (the
        // concurrency is): growing it further would only make the first 429s a flood.
        let runaway = self
            .observed_rate(now)
            .is_some_and(|observed| pace > SLOW_START_LEAD * observed);
        if self.pace_bound && !runaway && now.saturating_duration_since(self.last_probe) >= interval
        {
            self.pace = Some(pace * SLOW_START_GROWTH);
            tracing::trace!(
                pace = pace * SLOW_START_GROWTH,
                limit = self.limit,
                "slow start"
            );
            self.pace_bound = false;
            self.last_probe = now;
        }
    }

    /// The in-flight limit after an answer that took `rtt`.
    fn adapt_limit(&mut self, now: Instant, rtt: Duration, max: usize) {
        let sample = rtt.as_secs_f64();
        let short = self.rtt_short.map_or(sample, |s| s * 0.8 + sample * 0.2);
        let long = self.rtt_long.map_or(sample, |l| l * 0.98 + sample * 0.02);
        self.rtt_short = Some(short);
        self.rtt_long = Some(long);
        if short > 2.0 * long + 0.002 {
            let due = self
                .last_shrink
                .is_none_or(|t| now.saturating_duration_since(t) >= self.rtt());
            if due {
                self.limit = (self.limit * 0.9).max(1.0);
                self.last_shrink = Some(now);
                self.slow_start = false;
            }
            return;
        }
        // Little's law: the pace over a round trip is what must be in flight to keep it,
        // with room for round trips that vary. Without this the limit grows only when a
        // request finds every slot taken, which a paced request rarely does. Not in slow
        // start: there the pace is a guess racing ahead of the limit, and the requests in
        // flight when the first 429 comes back are all refused (the benchmark's 429s
        // tripled when it did).
        if let Some(pace) = self.pace.filter(|_| !self.slow_start) {
            let needed = (pace * short * LITTLE_HEADROOM + 1.0).min(max as f64);
            if needed > self.limit {
                self.limit = needed;
                self.concurrency_bound = false;
            }
        }
        // In slow start the window grows while it is full when an answer comes back, as
        // TCP's does: waiting for a request to find every slot taken added one slot per
        // such wait, and took 7 s to reach the 100 in flight that 200 ms x 500/s needs.
        // Requests holding a slot while they wait for their paced start say the pace is
        // what holds them back, not the window. At a few hundred requests a second one
        // nearly always is, if only for less than a timer tick, so the window grows about
        // 1.2 times a round trip rather than 1.5 (traced at 200 ms x 500/s). Asking
        // instead whether the pace allows fewer than the window over a round trip grew it
        // as meant, and cost 429s of 1.1-2.5% where they were 0.7-1.6% for ratios 0.01-0.03
        // better (four cells, one run each): not kept.
        let full = self.slow_start && self.slot_waiters == 0 && self.in_flight >= self.limit_now();
        if !self.concurrency_bound && !full {
            return;
        }
        let step = if self.slow_start {
            SLOW_START_WINDOW_STEP
        } else {
            1.0 / self.limit
        };
        let before = self.limit_now();
        // Nor beyond what the pace needs over a round trip: a window racing ahead of the
        // pace floods the server when a burst allowance runs dry (at 20 ms x 500/s with a
        // second's burst it reached 211 where 10 are needed).
        let needed = self
            .pace
            .filter(|_| self.slow_start)
            .map_or(f64::MAX, |pace| pace * short * LITTLE_HEADROOM + 1.0);
        self.limit = (self.limit + step)
            .min(max as f64)
            .min(needed.max(self.limit));
        if self.limit_now() > before {
            self.concurrency_bound = false;
        }
    }
}

/// A request's slot at the gate, from its start until it is dropped; its answer is
/// reported through it, so that a request that never gets one (a transport error, a
/// body cut off, a cancelled crawl) is settled when the slot is given back.
pub(super) struct Permit {
    gate: Arc<Gate>,
    /// When the request was released.
    sent: Instant,
    /// Its send time is not (or no longer) among the unanswered.
    settled: bool,
}

impl Permit {
    /// A successful answer, received at `now`, with its rate-limit headers.
    pub(super) fn success(&mut self, now: Instant, headers: Option<RateHeaders>) {
        self.settled = true;
        self.gate.on_success(self.sent, now, headers);
    }

    /// A 429, received at `now`.
    pub(super) fn rate_limited(&mut self, now: Instant) {
        self.settled = true;
        self.gate.on_rate_limited(self.sent, now);
    }

    /// An answer other than a success or a 429, received at `now`.
    pub(super) fn other_answer(&mut self, now: Instant) {
        self.settled = true;
        self.gate.on_other_answer(self.sent, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut s = self.gate.lock();
            s.in_flight -= 1;
            if !self.settled {
                s.settle(self.sent);
            }
        }
        self.gate.wake_one();
    }
}

/// Counts a [`Queue::Front`] request as waiting for a slot while it lives (also when the
/// request is cancelled mid-wait), unless it got one ([`FrontWait::served`]).
struct FrontWait<'a> {
    gate: &'a Gate,
    waiting: bool,
}

impl<'a> FrontWait<'a> {
    fn new(gate: &'a Gate) -> Self {
        gate.lock().front_waiters += 1;
        Self {
            gate,
            waiting: true,
        }
    }

    /// The request took a slot; true when it was the last one in front.
    fn served(&mut self, s: &mut GateState) -> bool {
        self.waiting = false;
        s.front_waiters = s.front_waiters.saturating_sub(1);
        s.front_waiters == 0
    }
}

impl Drop for FrontWait<'_> {
    fn drop(&mut self) {
        if !self.waiting {
            return;
        }
        let last = {
            let mut s = self.gate.lock();
            s.front_waiters = s.front_waiters.saturating_sub(1);
            s.front_waiters == 0
        };
        // Requests at the back may have let a free slot go to this one.
        if last {
            self.gate.notify.notify_one();
        }
    }
}

/// Counts a request in one of the gate's counters while it lives, also when the request
/// is cancelled mid-wait.
struct Counted<'a> {
    gate: &'a Gate,
    counter: fn(&mut GateState) -> &mut usize,
}

impl<'a> Counted<'a> {
    fn new(gate: &'a Gate, counter: fn(&mut GateState) -> &mut usize) -> Self {
        *counter(&mut gate.lock()) += 1;
        Self { gate, counter }
    }

    /// In line at the gate: waiting for a slot or for its paced start.
    fn in_line(gate: &'a Gate) -> Self {
        Self::new(gate, |s| &mut s.in_line)
    }

    /// Holding a slot while it waits for its paced start.
    fn slot_wait(gate: &'a Gate) -> Self {
        Self::new(gate, |s| &mut s.slot_waiters)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        let count = (self.counter)(&mut s);
        *count = count.saturating_sub(1);
    }
}

enum Next {
    /// The paced start time (`None` = now), and whether slow start is on.
    Go(Option<Instant>, bool),
    Wait,
    /// A slot is free, but a request in front is waiting for it.
    GiveWay,
}

impl Gate {
    pub(super) fn new(max: usize, adaptive: bool) -> Self {
        let max = max.max(1);
        Self {
            max,
            adaptive,
            state: Mutex::new(GateState::new(max, adaptive)),
            notify: Notify::new(),
            front: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // A panic while holding this lock leaves only counters behind; they stay usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Begins a crawl as a fresh client would: forgets what the last crawl learned (the
    /// daemon's client lives from run to run; the store carries what the next run needs)
    /// and, given `known`, a limit and burst allowance an earlier crawl found, paces from
    /// the start just under it; without it, sends the depth test with its second and
    /// third requests. Kept when requests are under way: their slots are counted in the
    /// state.
    pub(super) fn start_crawl(&self, known: Option<(f64, Option<f64>)>) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.in_line == 0 {
            *s = GateState::new(self.max, self.adaptive);
        }
        if let Some((per_second, depth)) = known {
            Self::assume(&mut s, self.adaptive, per_second, depth);
        }
        // The depth test goes with the second and third requests, if by then nothing is
        // known ([`GateState::reserve_slot`] decides, [`GateState::first_depth_test`]).
        s.first_test_due = s.in_flight == 0;
    }

    /// Paces from the start just under `per_second`, a limit an earlier crawl found, as if
    /// this gate had measured it: no slow start, and the in-flight window sized from the
    /// pace at the first answer. Only while the gate has found no limit of its own, and
    /// not below one request a second: the probe steps up only as answers come back, so a
    /// stale rate that low would hold every request back for seconds before it could be
    /// corrected, where a slow start finds a real one within a few round trips.
    fn assume(s: &mut GateState, adaptive: bool, per_second: f64, depth: Option<f64>) {
        if !adaptive || s.ceiling.is_some() || !(per_second.is_finite() && per_second >= 1.0) {
            return;
        }
        s.ceiling = Some(per_second);
        // Probed as a measure of this crawl's own: 1% above it after a quiet interval,
        // then faster. Probed as one confirmed again and again (a step every 8 intervals),
        // it drew no 429 where a deep burst allowance, full at the start of a crawl, hid
        // the limit; but a limit raised since was found a few percent a crawl (250/s
        // raised to 500/s at 400 ms: 1.99, 1.79, 1.70, 1.62 on the four crawls after,
        // where a crawl from nothing takes 1.24). An episode that measures it again
        // confirms it, as any measure. With the bucket's depth, each step stays small
        // until the bucket would have run dry ([`GateState::probe`]).
        s.last_measure = Some(per_second);
        s.assumed = true;
        // A bucket found one request deep stays so: never probed above, its limit
        // searched for again by a pair now and then. Stepped above as a deeper bucket's,
        // a later crawl measured half the pace, tested and searched again (1.13 where the
        // first crawl took 1.08, at 200 ms × 200/s).
        let one_deep = depth.is_some_and(|depth| depth.round() == 1.0);
        if one_deep {
            s.one_deep = true;
            s.shallow = true;
            s.searched_at = Some(Instant::now());
        } else {
            s.remembered = depth
                .filter(|depth| depth.is_finite() && *depth >= 1.0)
                .map(|depth| Remembered {
                    rate: per_second,
                    depth,
                    drawn: 0.0,
                    drawn_at: None,
                });
        }
        s.pace = Some(per_second * s.under);
        s.slow_start = false;
        tracing::debug!(
            pace = per_second * s.under,
            one_deep,
            "pace from an earlier crawl"
        );
    }

    /// The in-flight limit now.
    pub(super) fn limit(&self) -> usize {
        self.lock().limit_now()
    }

    /// The most requests it ever lets be in flight.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// The rate it has found the API to allow, in requests a second, with the burst
    /// allowance when a 429 showed where it ran dry (one request when the depth test found
    /// it so): `None` while it has found no rate.
    pub(super) fn learned(&self) -> Option<(f64, Option<f64>)> {
        let s = self.lock();
        let depth = if s.one_deep {
            Some(1.0)
        } else {
            s.measured_depth()
        };
        Some((s.ceiling?, depth))
    }

    /// Wakes one request waiting for a slot, one in front if there is any.
    fn wake_one(&self) {
        if self.lock().front_waiters > 0 {
            self.front.notify_one();
        } else {
            self.notify.notify_one();
        }
    }

    /// Sleeps until a paced start time: to a fraction of a millisecond once the pace
    /// follows what the server allows ([`super::timer`]). In slow start the pace is a
    /// guess running up to [`SLOW_START_LEAD`] times ahead of what gets through, and
    /// Tokio's millisecond ticks held its releases to about one a tick; released
    /// precisely, the ramp's clumps went out faster and its first episode refused
    /// 40% more (200 ms × 500/s, a tenth's burst: 71–79 against 49–58). `slow_start` is
    /// read under the lock that handed out the time, not taken again per request.
    async fn sleep_until(at: Instant, slow_start: bool) {
        if slow_start {
            tokio::time::sleep_until(at.into()).await;
        } else {
            super::timer::sleep_until(at).await;
        }
    }

    /// Waits for a free slot, in line at `queue`, and for the request's paced start time;
    /// `Instant` is when it was released, which tells later answers which episode they
    /// belong to.
    pub(super) async fn acquire(self: &Arc<Self>, queue: Queue) -> (Permit, Instant) {
        let _in_line = Counted::in_line(self);
        let mut in_front = (queue == Queue::Front).then(|| FrontWait::new(self));
        loop {
            let notified = match queue {
                Queue::Front => self.front.notified(),
                Queue::Back => self.notify.notified(),
            };
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut last_in_front = false;
            let next = {
                let mut s = self.lock();
                let now = Instant::now();
                if s.in_flight >= s.limit_now() {
                    // Requests holding a slot while they wait for their paced start say
                    // the pace is the bottleneck, not the concurrency.
                    if s.slot_waiters == 0 {
                        s.concurrency_bound = true;
                    }
                    Next::Wait
                } else if in_front.is_none() && s.front_waiters > 0 {
                    Next::GiveWay
                } else if s.booked_ahead(now) {
                    // The next release wakes it.
                    s.pace_bound = true;
                    Next::Wait
                } else {
                    if let Some(wait) = in_front.as_mut() {
                        last_in_front = wait.served(&mut s);
                    }
                    s.in_flight += 1;
                    Next::Go(s.reserve_slot(now), s.slow_start)
                }
            };
            match next {
                Next::Go(slot, slow_start) => {
                    // The requests at the back that gave way to this one look again.
                    if last_in_front {
                        self.notify.notify_one();
                    }
                    let mut permit = Permit {
                        gate: self.clone(),
                        sent: Instant::now(),
                        // Nothing to settle until it is released.
                        settled: true,
                    };
                    if let Some(slot) = slot.filter(|slot| *slot > Instant::now()) {
                        let _waiting = Counted::slot_wait(self);
                        Self::sleep_until(slot, slow_start).await;
                    }
                    loop {
                        let now = Instant::now();
                        let (later, slow_start) = {
                            let mut s = self.lock();
                            let later = s.release(now, slot);
                            if later.is_none() {
                                s.released(now);
                            }
                            (later, s.slow_start)
                        };
                        let Some(later) = later else {
                            // A start time is free within the horizon again.
                            self.wake_one();
                            permit.sent = now;
                            permit.settled = false;
                            return (permit, now);
                        };
                        let _waiting = Counted::slot_wait(self);
                        Self::sleep_until(later, slow_start).await;
                    }
                }
                Next::Wait => notified.await,
                Next::GiveWay => {
                    // The wake-up that brought this request here was for the free slot:
                    // pass it on to the request in front.
                    self.front.notify_one();
                    notified.await;
                }
            }
        }
    }

    /// A successful answer to a request released at `sent`, received at `now`.
    fn on_success(&self, sent: Instant, now: Instant, headers: Option<RateHeaders>) {
        let raised = {
            let mut s = self.lock();
            let before = s.limit_now();
            s.recent.push_back(now);
            s.record(sent, false, now);
            s.pair_answer(sent, false, now);
            if let Some(headers) = headers {
                Self::apply_headers(&mut s, headers, sent);
            }
            if self.adaptive {
                s.adapt_limit(now, now.saturating_duration_since(sent), self.max);
                if s.slow_start && s.ceiling.is_none() {
                    s.slow_start_pace(now);
                } else {
                    s.probe(now);
                }
            } else {
                s.probe(now);
            }
            s.limit_now() > before
        };
        if raised {
            self.wake_one();
        }
    }

    /// The headers state the limit: pace just under it, and never probe above it.
    /// The headers of the answer to a request released at `sent`.
    fn apply_headers(s: &mut GateState, headers: RateHeaders, sent: Instant) {
        let stated = headers.limit_per_minute / 60.0;
        if !(stated.is_finite() && stated > 0.0) {
            return;
        }
        s.header_rate = Some(stated);
        // A rate assumed from an earlier crawl gives way to the one the API states now,
        // a raised limit included: kept as a ceiling, it held a crawl at the old rate.
        s.remembered = None;
        if std::mem::take(&mut s.assumed) {
            s.ceiling = None;
            s.pace = None;
            s.last_measure = None;
            s.probe_backoff = 1.0;
        }
        s.ceiling = Some(s.ceiling.map_or(stated, |c| c.min(stated)));
        let under = stated * s.under;
        // The first statement sets the pace; after that it only caps it, so the pace a
        // 429 cut climbs back by the probe instead of jumping into the next 429.
        s.pace = Some(match s.pace {
            Some(pace) if !s.slow_start => pace.min(under),
            _ => under,
        });
        // An empty budget with the time it takes to refill: the next slot waits for it.
        // The budget is the one the request found on arrival, about when it was sent, so
        // the token comes back that long after the send: counted from the answer, a
        // round trip later, it held every start back by the latency (found in the
        // benchmark, at a burst of one).
        if let (Some(remaining), Some(reset)) = (headers.remaining, headers.reset)
            && remaining < 1.0
        {
            let refill = sent + reset.min(Duration::from_secs_f64(1.0 / stated));
            s.hold_until = Some(s.hold_until.map_or(refill, |n| n.max(refill)));
        }
        s.slow_start = false;
    }

    /// An answer other than a success or a 429 (a 404, a 5xx): it spent a token at the
    /// server all the same, which the measure of the limit must count.
    fn on_other_answer(&self, sent: Instant, now: Instant) {
        let mut s = self.lock();
        s.record(sent, false, now);
        s.pair_answer(sent, false, now);
    }

    /// A 429 for a request released at `sent`. Its send time goes into the measure of
    /// the server's limit ([`GateState::measured_limit`]). The first 429 of an episode (a
    /// request sent after the last one began) starts a new one; within an episode every
    /// 429 refines the measure, and the pace is set just under it, or cut by 3% while there
    /// is no measure yet. It is not cut when it was already under the measure, nor for a
    /// rare 429 among hundreds of answers (the jitter of arrivals, not a pace too fast).
    fn on_rate_limited(&self, sent: Instant, now: Instant) {
        let mut s = self.lock();
        // The pair test's second refused: the test's answer, meant, and no episode.
        if s.pair_answer(sent, true, now) {
            s.settle(sent);
            return;
        }
        s.first_refused = Some(s.first_refused.map_or(sent, |first| first.min(sent)));
        let rare = s.since_refused >= RARE_429;
        let lone = s.since_refused > LONE_429;
        s.record(sent, true, now);
        let episode_start = s.last_cut.is_none_or(|cut| sent > cut);
        // Against a bucket one request deep, a pace over the limit draws a 429 every other
        // request, which measures half the pace; one that measures nothing under the pace
        // is a clump of arrivals, and cutting for it (and starting the probe's steps over)
        // held a crawl at 60-90% of the limit for twenty seconds (traced, 200 ms × 200/s).
        if s.one_deep
            && episode_start
            && s.header_rate.is_none()
            && !s.often_refused()
            && s.pace.is_some_and(|pace| {
                lone || s
                    .measured_limit()
                    .is_none_or(|measured| measured >= pace * JITTER_MEASURE)
            })
        {
            tracing::trace!("rate limited: the jitter of arrivals at a bucket one deep");
            return;
        }
        // Refused at the floor's pace or under it, twice (once is the jitter of arrivals
        // against a bucket with no room to spare): the limit is lower than the floor.
        if s.floor_from.is_some_and(|from| sent > from) {
            s.floor_misses += 1;
            if s.floor_misses >= 2 {
                s.floor = None;
                s.floor_from = None;
                // The floor was this episode's measure: judge the real one afresh.
                s.episode_measured = false;
            }
        }
        // A 429 now and then among hundreds of answers is the jitter of arrivals against
        // a bucket with no room to spare, not a pace over the limit: cutting for each one
        // walks the pace down while the next 429 is just as likely.
        if episode_start && !s.slow_start && rare {
            s.probe_step = PROBE_STEP;
            return;
        }
        if episode_start {
            let current = match (s.pace, s.observed_rate(now)) {
                (Some(pace), _) => pace,
                (None, Some(observed)) => observed,
                // Unpaced with too few successes to measure: a guess that the probe
                // corrects.
                (None, None) => (s.limit_now() as f64 / s.rtt().as_secs_f64().max(0.05)).max(1.0),
            };
            s.episode_pace = current;
            s.peak_episode_pace = s.peak_episode_pace.max(current);
            let sustained = s.sustained.take();
            if s.floor.is_none() {
                s.floor = sustained.filter(|sustained| current > *sustained * 1.001);
            }
            s.episode_measured = false;
            s.probe_step = PROBE_STEP;
            // Requests already holding a slot reserved at the old pace leave at it, and
            // their 429s belong to this episode: counted as the next one's, they began
            // it at the cut pace with no floor, and a shallow bucket's measure held
            // (traced at 50 ms × 50/s, eight slots reserved ahead).
            s.last_cut = Some(s.last_slot.map_or(now, |slot| slot.max(now)));
            s.last_probe = now;
        }
        // Under a limit the headers state, the pace never goes above the margin under it,
        // so a 429 there is the jitter of arrivals against a shallow bucket (or another
        // client spending the same budget, which the margin also makes room for). The
        // measure is not taken: against a bucket one request deep it reads about half the
        // pace, since the tokens the bucket wastes between two refusals are never
        // accepted (traced at 20 ms × 200/s: a stated 200 a second measured 73).
        if let Some(stated) = s.header_rate.filter(|_| !s.assumed) {
            s.shallow = true;
            if episode_start {
                s.under = (1.0 - (1.0 - s.under) * MARGIN_WIDENING).max(MIN_UNDER);
                let settled = s.ceiling.unwrap_or(stated) * s.under;
                s.pace = Some(s.pace.map_or(settled, |pace| pace.min(settled)));
                tracing::debug!(
                    pace = settled,
                    "rate limited under the stated limit: a wider margin"
                );
            }
            return;
        }
        let light = s.episode_pace * LIGHT_CUT;
        match s.measured_limit() {
            // Over a bucket one request deep the episode's later 429s measure half the
            // pace that drew them, under what the search's pairs have found; or, at the
            // start of a crawl that begins one deep from an earlier crawl's finding, the
            // requests the crawl sends one page at a time (10 a second, traced). The
            // episode's start has searched again.
            Some(_) if s.one_deep && !episode_start => return,
            Some(measured) => {
                let before = s.ceiling;
                let measured = match s.floor {
                    Some(floor) if measured < floor * IMPLAUSIBLE_DROP => {
                        if s.floor_from.is_none() {
                            s.floor_from = Some(s.last_slot.map_or(now, |slot| slot.max(now)));
                            s.floor_misses = 0;
                        }
                        s.shallow = true;
                        floor
                    }
                    _ => measured,
                };
                // Just under the measure; no cut when already under it: the bucket the
                // last episode emptied has not refilled a cushion yet, and jitter found
                // its bottom. Cutting on would walk the pace down a step per 429 (found
                // in the benchmark).
                if !s.episode_measured {
                    // The limit found where the last episode left it: the probe above it
                    // only buys the next episode's 429s, so it waits longer.
                    let same = s
                        .last_measure
                        .is_some_and(|last| (measured / last - 1.0).abs() <= SAME_MEASURE);
                    s.probe_backoff = if same {
                        (s.probe_backoff * 2.0).min(MAX_PROBE_BACKOFF)
                    } else {
                        1.0
                    };
                    s.episode_measured = true;
                }
                s.last_measure = Some(measured);
                s.pace = Some(s.episode_pace.min(measured * s.under).max(0.1));
                s.ceiling = Some(match s.header_rate {
                    Some(stated) => measured.min(stated),
                    None => measured,
                });
                // Measured in this crawl now, no longer only assumed from an earlier one.
                s.assumed = false;
                s.remembered = None;
                // The first measure out of slow start: the depth test's pair leaves after
                // the pause from the last request sent at the old pace, which a deeper
                // bucket refills two tokens in at about the measure (a turn of the probe
                // later, it cost a crawl up to two round trips more at half the limit).
                let first_measure = std::mem::replace(&mut s.slow_start, false);
                if first_measure && s.pair_test_worth_it() {
                    s.arm_depth_test(now);
                }
                s.concurrency_bound = false;
                // Over a bucket one request deep the measure reads half the pace: search
                // between the two by pairs rather than climb from the measure.
                if s.one_deep && episode_start {
                    s.search_again(measured, before, now);
                }
            }
            // A stray 429 while ramping up (a clump of arrivals at a small burst) says
            // little about the limit: keep looking, a little slower, until 429s come
            // often enough to measure it.
            None if episode_start => s.pace = Some(light.max(0.1)),
            None => {}
        }
        tracing::debug!(
            limit = s.limit_now(),
            pace = s.pace.unwrap_or(0.0),
            ceiling = s.ceiling.unwrap_or(0.0),
            "rate limited: pacing slower"
        );
    }
}

/// Reads `x-ratelimit-limit-requests`, `-remaining-requests` and `-reset-requests`; `None`
/// without a usable limit.
pub(super) fn rate_headers(headers: &reqwest::header::HeaderMap) -> Option<RateHeaders> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let number = |name: &str| {
        text(name)?
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    let limit_per_minute = number("x-ratelimit-limit-requests").filter(|n| *n > 0.0)?;
    Some(RateHeaders {
        limit_per_minute,
        remaining: number("x-ratelimit-remaining-requests"),
        reset: text("x-ratelimit-reset-requests").and_then(parse_go_duration),
    })
}

/// Reads a duration as OpenAI writes `x-ratelimit-reset-*` (Go's format): `1s`, `6m0s`,
/// `8.64s`, `20ms`, `1h2m3.5s`.
// Checked finite and in range just before; a float-to-integer `as` saturates anyway.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    // Nanoseconds, rounded once at the end: `8.64s` must not come out a nanosecond short.
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    let nanos = total.round();
    (nanos.is_finite() && nanos < u64::MAX as f64).then(|| Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn paced_slots_are_spread_evenly_and_idle_time_earns_no_burst() {
        let gate = Gate::new(8, true);
        let t0 = Instant::now();
        let mut s = gate.lock();
        s.pace = Some(100.0);
        let slots: Vec<Instant> = (0..4).filter_map(|_| s.reserve_slot(t0)).collect();
        assert_eq!(slots, [t0, t0 + ms(10), t0 + ms(20), t0 + ms(30)]);
        // After a pause the next request goes at once, and the one after waits its turn.
        let later = t0 + ms(1000);
        assert_eq!(s.reserve_slot(later), Some(later));
        assert_eq!(s.reserve_slot(later), Some(later + ms(10)));
    }

    #[test]
    fn a_fixed_concurrency_never_moves_and_is_unpaced_until_the_server_objects() {
        let gate = Gate::new(5, false);
        let t0 = Instant::now();
        gate.lock().concurrency_bound = true;
        for i in 0..100 {
            gate.on_success(t0, t0 + ms(i), None);
        }
        assert_eq!(gate.limit(), 5);
        assert!(gate.lock().pace.is_none());
        gate.on_rate_limited(t0 + ms(100), t0 + ms(101));
        assert_eq!(
            gate.limit(),
            5,
            "a 429 paces, it does not cut a fixed concurrency"
        );
        assert!(gate.lock().pace.is_some());
    }

    #[test]
    fn adaptive_concurrency_grows_only_while_requests_wait_for_a_slot() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        assert_eq!(gate.limit(), START_LIMIT);
        for i in 0..50 {
            gate.on_success(t0, t0 + ms(50 + i), None);
        }
        assert_eq!(gate.limit(), START_LIMIT, "nobody waited: no growth");
        // A pace that asks for more than the ceiling in flight.
        gate.lock().pace = Some(100_000.0);
        // Slow start: half a slot more per success while requests queue for a slot.
        for i in 0..200 {
            gate.lock().concurrency_bound = true;
            gate.on_success(t0 + ms(i), t0 + ms(i + 50), None);
        }
        assert_eq!(gate.limit(), 64, "never above the ceiling");
    }

    #[test]
    fn adaptive_concurrency_shrinks_when_latency_rises() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().limit = 40.0;
        for i in 0..200 {
            gate.on_success(t0 + ms(i), t0 + ms(i + 20), None);
        }
        assert_eq!(gate.limit(), 40);
        // Answers suddenly take ten times as long: the short-term average leaves the
        // long-term one behind and the limit comes down, at most once per round trip.
        let mut now = t0 + ms(1000);
        for _ in 0..20 {
            now += ms(50);
            gate.on_success(now - ms(200), now, None);
        }
        let limit = gate.limit();
        assert!((10..40).contains(&limit), "{limit}");
        assert!(!gate.lock().slow_start);
    }

    #[test]
    fn slow_start_raises_the_pace_a_quarter_per_round_trip_while_requests_wait_for_it() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        assert_eq!(gate.lock().pace, Some(START_PACE));
        let mut now = t0;
        for _ in 0..4 {
            now += ms(50);
            gate.lock().pace_bound = true;
            gate.on_success(now - ms(40), now, None);
        }
        let pace = gate.lock().pace.expect("paced");
        let expected = START_PACE * SLOW_START_GROWTH.powi(4);
        assert!((pace - expected).abs() < 1e-6, "{pace} vs {expected}");
        // Not waiting for slots: the pace is not what holds the crawl back, so it stays.
        now += ms(50);
        gate.on_success(now - ms(40), now, None);
        assert_eq!(gate.lock().pace, Some(pace));
    }

    /// An adaptive gate of `max` past slow start, pacing at `pace` under `ceiling`, in the
    /// middle of a crawl: thousands of reads in line, and the depth test done (the bucket
    /// deeper than one request).
    fn past_slow_start(max: usize, pace: f64, ceiling: Option<f64>) -> Gate {
        let gate = Gate::new(max, true);
        {
            let mut s = gate.lock();
            s.pace = Some(pace);
            s.ceiling = ceiling;
            s.slow_start = false;
            s.in_line = 5_000;
            s.pair = PairTest::Done;
        }
        gate
    }

    #[test]
    fn near_the_end_of_a_crawl_the_pace_climbs_back_under_the_limit_but_never_above_it() {
        let gate = past_slow_start(64, 50.0, Some(100.0));
        let t0 = Instant::now();
        // Fewer requests in line than the pace sends in two seconds: the crawl is ending.
        gate.lock().in_line = 150;
        let mut now = t0;
        for _ in 0..40 {
            now += PROBE_INTERVAL;
            gate.lock().pace_bound = true;
            gate.on_success(now - ms(20), now, None);
        }
        let pace = gate.lock().pace.expect("paced");
        assert!(
            (pace - 100.0 * UNDER_CEILING).abs() < 0.5,
            "back under the ceiling and no higher: {pace}"
        );
        // A deep line again (a list's next page fanned out): the probe goes on above it.
        gate.lock().in_line = 1_000;
        now += PROBE_INTERVAL;
        gate.lock().pace_bound = true;
        gate.on_success(now - ms(20), now, None);
        assert!(gate.lock().pace.expect("paced") > 100.0 * UNDER_CEILING + 0.5);
    }

    #[test]
    fn a_limit_from_an_earlier_crawl_paces_from_the_first_request_with_the_window_it_needs() {
        let gate = Gate::new(512, true);
        gate.start_crawl(Some((500.0, None)));
        {
            let s = gate.lock();
            assert_eq!(s.pace, Some(500.0 * UNDER_CEILING));
            assert!(!s.slow_start, "no ramp to climb");
            assert_eq!(s.ceiling, Some(500.0));
            assert!(
                (s.probe_backoff - 1.0).abs() < 1e-12,
                "probed as a fresh measure"
            );
        }
        // The first answer (400 ms) sizes the window for the pace over a round trip.
        let t0 = Instant::now();
        gate.on_success(t0, t0 + ms(400), None);
        // 492.5 a second × 0.4 s × 1.5 headroom + 1.
        assert_eq!(gate.limit(), 296);
        // The API's headers state another limit (it was raised since): theirs is the one.
        let stated = RateHeaders {
            limit_per_minute: 60_000.0,
            remaining: Some(500.0),
            reset: None,
        };
        gate.on_success(t0 + ms(10), t0 + ms(410), Some(stated));
        {
            let s = gate.lock();
            assert_eq!(s.ceiling, Some(1_000.0));
            assert_eq!(s.pace, Some(1_000.0 * UNDER_CEILING));
        }
        // Mid-crawl, a limit of its own is not replaced; a fixed concurrency is never paced
        // by one.
        gate.lock().in_flight = 1;
        gate.start_crawl(Some((50.0, None)));
        assert_eq!(gate.lock().ceiling, Some(1_000.0));
        let fixed = Gate::new(8, false);
        fixed.start_crawl(Some((50.0, None)));
        assert!(fixed.lock().pace.is_none());
        let fresh = Gate::new(8, true);
        for nonsense in [0.0, 0.5, -1.0, f64::NAN, f64::INFINITY] {
            fresh.start_crawl(Some((nonsense, None)));
        }
        assert!(fresh.lock().ceiling.is_none() && fresh.lock().slow_start);
    }

    #[test]
    fn each_crawl_starts_from_what_the_store_knows_not_from_where_the_last_one_ended() {
        // The daemon's client lives from run to run: a crawl that ended on a limit and a
        // wide window of its own ...
        let gate = past_slow_start(256, 985.0, Some(1_000.0));
        gate.lock().limit = 200.0;
        gate.lock().in_line = 0;
        // ... is forgotten when the next one starts, which paces from the stored rate.
        gate.start_crawl(Some((400.0, Some(40.0))));
        {
            let s = gate.lock();
            assert_eq!(s.ceiling, Some(400.0));
            assert_eq!(s.pace, Some(400.0 * UNDER_CEILING));
            assert_eq!(s.limit_now(), START_LIMIT);
            assert!(s.remembered.is_some());
        }
        // With nothing stored, it ramps up as a first crawl does.
        gate.start_crawl(None);
        let s = gate.lock();
        assert!(s.ceiling.is_none() && s.slow_start && s.remembered.is_none());
        assert_eq!(s.pace, Some(START_PACE));
    }

    /// Drives `gate` for `seconds` of a crawl that never draws a 429: requests leave at the
    /// pace and answer after 20 ms, with requests always waiting for the pace. Returns the
    /// highest pace reached while the remembered bucket still capped the probe, and the
    /// pace at the end.
    fn probe_without_429s(gate: &Gate, seconds: u64) -> (f64, f64) {
        let t0 = Instant::now();
        let mut next_send = t0;
        let mut capped: f64 = 0.0;
        for tick in 1..=seconds * 100 {
            let now = t0 + ms(tick * 10);
            while next_send <= now {
                let pace = {
                    let mut s = gate.lock();
                    assert_eq!(s.release(next_send, None), None, "sent at the pace");
                    s.pace.expect("paced")
                };
                next_send += Duration::from_secs_f64(1.0 / pace);
            }
            gate.lock().pace_bound = true;
            gate.on_success(now - ms(20), now, None);
            let s = gate.lock();
            if s.remembered.is_some() {
                capped = capped.max(s.pace.expect("paced"));
            }
        }
        let end = gate.lock().pace.expect("paced");
        (capped, end)
    }

    #[test]
    fn above_a_remembered_limit_the_probe_steps_small_until_the_bucket_would_have_run_dry() {
        // 100/s with a bucket of 50 found by an earlier crawl. Until 1.2 × 50 + 2 requests
        // more than 100/s have gone out, a bucket that deep could still be hiding that
        // limit, and each request above it would be refused when it ran dry.
        let gate = Gate::new(256, true);
        gate.start_crawl(Some((100.0, Some(50.0))));
        gate.lock().in_line = 5_000;
        let (capped, end) = probe_without_429s(&gate, 20);
        assert!(capped > 110.0, "it does step above: {capped}");
        assert!(capped <= 100.0 * (1.0 + GENTLE) + 1e-9, "{capped}");
        // No 429 after that: the limit is higher now, and the probe goes on as fast as
        // after any measure.
        assert!(gate.lock().remembered.is_none());
        assert!(end > 200.0, "{end}");
        // Without the bucket's depth, nothing holds the steps small.
        let unknown = Gate::new(256, true);
        unknown.start_crawl(Some((100.0, None)));
        unknown.lock().in_line = 5_000;
        let t0 = Instant::now();
        for tick in 1..=300 {
            let now = t0 + ms(tick * 10);
            unknown.lock().pace_bound = true;
            unknown.on_success(now - ms(20), now, None);
        }
        let pace = unknown.lock().pace.expect("paced");
        assert!(pace > 100.0 * (1.0 + GENTLE), "{pace}");
    }

    #[test]
    fn the_bucket_depth_is_measured_where_it_first_ran_dry() {
        // A bucket of 50 refilling at 100/s, full at the start: a second at 50/s
        // overflows it, then 200/s empties it in half a second, 100 requests later.
        let gate = past_slow_start(256, 1_000.0, Some(100.0));
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..50 {
            sent.push(t0 + ms(20 * i));
        }
        let dry_from = t0 + ms(1_000);
        for i in 0..100 {
            sent.push(dry_from + ms(5 * i));
        }
        let refused = dry_from + ms(500);
        for at in &sent {
            assert_eq!(gate.lock().release(*at, None), None);
        }
        assert_eq!(gate.lock().measured_depth(), None, "not run dry yet");
        assert_eq!(gate.lock().release(refused, None), None);
        gate.on_rate_limited(refused, refused + ms(20));
        // The log of sends stops once the first 429 is back: the rest of the crawl is not
        // part of the measure, and is not kept for it.
        let logged = gate.lock().sends.len();
        assert_eq!(gate.lock().release(refused + ms(25), None), None);
        assert_eq!(gate.lock().sends.len(), logged);
        let depth = gate.lock().measured_depth().expect("measured");
        assert!((depth - 50.0).abs() < 1.0, "{depth}");
    }

    /// Plays a server whose bucket is empty and refills at `limit` a second against a
    /// client sending every `every`: the sends from `from` on, each accepted when a token
    /// has come back since the last one and refused (429) otherwise.
    fn play(gate: &Gate, from: Instant, every: Duration, count: u32, limit: f64) -> Instant {
        let mut tokens = 0.0f64;
        let mut sent = from;
        for _ in 0..count {
            tokens += every.as_secs_f64() * limit;
            let answered = sent + ms(20);
            if tokens >= 1.0 {
                tokens -= 1.0;
                gate.on_success(sent, answered, None);
            } else {
                gate.on_rate_limited(sent, answered);
            }
            sent += every;
        }
        sent
    }

    #[test]
    fn the_limit_is_measured_from_the_requests_accepted_between_two_429s() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().pace = Some(400.0);
        // 400 a second against a limit of 100: three of every four are refused.
        play(&gate, t0, Duration::from_micros(2500), 200, 100.0);
        let s = gate.lock();
        let measured = s.measured_limit().expect("a measure");
        assert!((measured - 100.0).abs() < 3.0, "{measured}");
        assert_eq!(s.ceiling, Some(measured));
        // Every 429 that goes on coming (this server is sent 400 a second whatever the
        // pace says) keeps the pace under the lowest measure so far.
        let pace = s.pace.expect("paced");
        assert!((85.0..=measured * UNDER_CEILING).contains(&pace), "{pace}");
        assert!(!s.slow_start);
        // A pace over the limit, measured as it reads, shows nothing of the bucket's depth.
        assert!(!s.shallow);
    }

    #[test]
    fn a_limit_is_measured_right_when_429s_come_back_sooner_than_acceptances() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().pace = Some(400.0);
        // 400 a second against a limit of 100, as above, but refused in 20 ms (a gateway)
        // and accepted in 400 ms (the API's work): when the 429s come back, every request
        // accepted between them is still on its way.
        let mut tokens = 0.0f64;
        let mut answers = Vec::new();
        for i in 0..200u32 {
            let sent = t0 + Duration::from_micros(2500) * i;
            gate.lock().released(sent);
            tokens += 0.25;
            if tokens >= 1.0 {
                tokens -= 1.0;
                answers.push((sent + ms(400), sent, false));
            } else {
                answers.push((sent + ms(20), sent, true));
            }
        }
        answers.sort();
        for (at, sent, refused) in answers.into_iter().filter(|(at, ..)| *at <= t0 + ms(300)) {
            if refused {
                gate.on_rate_limited(sent, at);
            } else {
                gate.on_success(sent, at, None);
            }
        }
        let s = gate.lock();
        let measured = s.measured_limit().expect("a measure");
        assert!((measured - 100.0).abs() < 5.0, "{measured}");
        let pace = s.pace.expect("paced");
        assert!((85.0..=measured * UNDER_CEILING).contains(&pace), "{pace}");
    }

    #[tokio::test]
    async fn a_request_is_unanswered_until_its_answer_or_its_slot_is_given_back() {
        let gate = Arc::new(Gate::new(4, false));
        let (mut answered, _) = gate.acquire(Queue::Back).await;
        let (lost, _) = gate.acquire(Queue::Back).await;
        assert_eq!(gate.lock().unanswered.values().sum::<u32>(), 2);
        answered.success(Instant::now(), None);
        assert_eq!(gate.lock().unanswered.values().sum::<u32>(), 1);
        // A request that never got an answer (a transport error) is settled with its slot.
        drop(lost);
        assert!(gate.lock().unanswered.is_empty());
        // An answered one is not settled again when its slot goes back: another request
        // released at the same instant stays unanswered.
        gate.lock().released(answered.sent);
        drop(answered);
        assert_eq!(gate.lock().unanswered.values().sum::<u32>(), 1);
        assert_eq!(gate.lock().in_flight, 0);
    }

    #[test]
    fn a_429_while_already_under_the_measure_cuts_nothing() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().pace = Some(400.0);
        let later = play(&gate, t0, Duration::from_micros(2500), 200, 100.0);
        let settled = gate.lock().pace.expect("paced");
        let measured = gate.lock().measured_limit().expect("a measure");
        assert!(
            settled <= measured * UNDER_CEILING + 1e-9,
            "{settled} {measured}"
        );
        // The bucket that episode emptied has no cushion yet: a 429 at the settled pace
        // is jitter at its bottom, and the pace stays.
        gate.on_rate_limited(later, later + ms(20));
        assert_eq!(gate.lock().pace, Some(settled));
    }

    #[test]
    fn after_slow_start_the_in_flight_limit_is_what_the_pace_needs_over_a_round_trip() {
        let gate = past_slow_start(256, 500.0, None);
        let t0 = Instant::now();
        for i in 0..20 {
            let at = t0 + ms(200 + i);
            gate.on_success(at - ms(200), at, None);
        }
        // 500 a second × 200 ms = 100 in flight, and half again for room.
        assert_eq!(gate.limit(), 151);
        // In slow start the pace is a guess: the limit does not chase it.
        let ramping = Gate::new(256, true);
        ramping.lock().pace = Some(500.0);
        for i in 0..20 {
            let at = t0 + ms(200 + i);
            ramping.on_success(at - ms(200), at, None);
        }
        assert_eq!(ramping.limit(), START_LIMIT);
    }

    #[test]
    fn slow_start_stops_growing_a_pace_far_above_what_gets_through() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().pace = Some(1000.0);
        // 100 a second get through: the pace is ten times that. Once enough answers have
        // come to measure that (20), the pace grows no more.
        let mut now = t0;
        let mut paces = Vec::new();
        for _ in 0..60 {
            now += ms(10);
            gate.lock().pace_bound = true;
            gate.on_success(now - ms(5), now, None);
            paces.push(gate.lock().pace.expect("paced"));
        }
        assert!(
            paces[19] > 1000.0,
            "it grew before it could tell: {paces:?}"
        );
        assert!(paces[19..].iter().all(|p| *p == paces[19]), "{paces:?}");
    }

    #[test]
    fn a_429_now_and_then_among_hundreds_of_answers_cuts_nothing() {
        let gate = past_slow_start(64, 300.0, Some(310.0));
        let t0 = Instant::now();
        for i in 0..300 {
            let sent = t0 + Duration::from_micros(3333 * i);
            gate.on_success(sent, sent + ms(20), None);
        }
        gate.on_rate_limited(t0 + ms(999), t0 + ms(1019));
        assert_eq!(gate.lock().pace, Some(300.0), "one in 301 is jitter");
        // Many more are a pace over the limit.
        for i in 0..5 {
            gate.on_rate_limited(t0 + ms(1000 + i), t0 + ms(1020 + i));
        }
        assert!(gate.lock().pace.expect("paced") < 300.0);
    }

    #[test]
    fn a_first_429_cuts_a_little_until_enough_429s_measure_the_limit() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().pace = Some(200.0);
        gate.on_rate_limited(t0 + ms(10), t0 + ms(60));
        assert_eq!(gate.lock().pace, Some(200.0 * LIGHT_CUT));
        assert_eq!(gate.lock().ceiling, None, "one 429 measures nothing");
        // The rest of the episode (sent before the first answer) cuts nothing more until
        // it measures the limit.
        gate.on_success(t0 + ms(11), t0 + ms(61), None);
        gate.on_rate_limited(t0 + ms(12), t0 + ms(62));
        assert_eq!(gate.lock().pace, Some(200.0 * LIGHT_CUT));
        // A request sent after the cut that still draws a 429 starts a new episode.
        gate.on_rate_limited(t0 + ms(70), t0 + ms(120));
        let again = gate.lock().pace.expect("paced");
        assert!(
            (again - 200.0 * LIGHT_CUT * LIGHT_CUT).abs() < 1e-9,
            "{again}"
        );
    }

    #[test]
    fn a_limit_that_drops_mid_crawl_is_followed_within_a_few_dozen_requests() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().pace = Some(220.0);
        let later = play(&gate, t0, Duration::from_micros(4545), 200, 200.0);
        let before = gate.lock().ceiling.expect("measured");
        assert!((before - 200.0).abs() < 8.0, "{before}");
        // The server now allows 100 a second; the client still sends at 220.
        play(&gate, later, Duration::from_micros(4545), 120, 100.0);
        let after = gate.lock().ceiling.expect("measured");
        assert!((after - 100.0).abs() < 5.0, "{after}");
    }

    #[test]
    fn an_answer_other_than_a_success_spent_a_token_all_the_same() {
        let measure = |others: bool| {
            let gate = Gate::new(64, true);
            let t0 = Instant::now();
            gate.on_rate_limited(t0, t0 + ms(20));
            for i in 1..50 {
                let sent = t0 + ms(2 * i);
                if others && i % 2 == 0 {
                    gate.on_other_answer(sent, sent + ms(20));
                } else {
                    gate.on_success(sent, sent + ms(20), None);
                }
            }
            gate.on_rate_limited(t0 + ms(100), t0 + ms(120));
            gate.lock().ceiling.expect("measured")
        };
        assert!((measure(false) - 490.0).abs() < 1e-6);
        assert!((measure(true) - measure(false)).abs() < 1e-6);
    }

    #[test]
    fn a_429_while_unpaced_paces_at_the_rate_that_got_through() {
        let gate = Gate::new(32, false);
        let t0 = Instant::now();
        // 100 successes over the last second: the server let 100 a second through.
        for i in 0..100 {
            gate.on_success(t0, t0 + ms(10 * i + 10), None);
        }
        gate.on_rate_limited(t0 + ms(990), t0 + ms(1000));
        let pace = gate.lock().pace.expect("paced");
        assert!((pace - 100.0 * LIGHT_CUT).abs() < 1.5, "{pace}");
    }

    #[test]
    fn a_stray_429_while_ramping_up_slows_a_little_and_keeps_ramping() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        gate.lock().pace = Some(100.0);
        for i in 0..99 {
            let at = t0 + ms(10 * i + 20);
            gate.on_success(at - ms(20), at, None);
        }
        gate.on_rate_limited(t0 + ms(980), t0 + ms(1000));
        let s = gate.lock();
        assert!(s.slow_start);
        assert_eq!(s.ceiling, None);
        assert!((s.pace.expect("paced") - 100.0 * LIGHT_CUT).abs() < 1e-6);
    }

    #[test]
    fn a_stray_429_among_many_successes_cuts_the_pace_a_little_and_keeps_the_ceiling() {
        let gate = past_slow_start(64, 97.0, Some(100.0));
        let t0 = Instant::now();
        for i in 0..97 {
            gate.on_success(t0, t0 + ms(10 * i + 10), None);
        }
        gate.on_rate_limited(t0 + ms(980), t0 + ms(1000));
        let s = gate.lock();
        let pace = s.pace.expect("paced");
        assert!((pace - 97.0 * LIGHT_CUT).abs() < 1e-6, "{pace}");
        assert_eq!(s.ceiling, Some(100.0));
    }

    #[test]
    fn after_a_cut_the_pace_climbs_back_under_the_ceiling_then_creeps_above_it_faster_and_faster() {
        let gate = past_slow_start(64, 50.0, Some(100.0));
        let t0 = Instant::now();
        let mut now = t0;
        let mut paces = Vec::new();
        for _ in 0..14 {
            now += PROBE_INTERVAL;
            gate.lock().pace_bound = true;
            gate.on_success(now - ms(20), now, None);
            paces.push(gate.lock().pace.expect("paced"));
        }
        assert!(paces.windows(2).all(|w| w[1] >= w[0]), "{paces:?}");
        // Halfway back each probe: within 1% of 98.5 after a few.
        let under = 100.0 * UNDER_CEILING;
        assert!((paces[6] - under).abs() < 1.0, "{paces:?}");
        // Then 1%, 2%, 4%, 8%, 16%, 25%, 25% a probe: past the old ceiling, which moves
        // up with it.
        let steps: Vec<f64> = paces.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
        let expected = [0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.25];
        assert_eq!(steps[6..].len(), expected.len(), "{steps:?}");
        for (step, expected) in steps[6..].iter().zip(expected) {
            assert!((step - expected).abs() < 1e-9, "{steps:?}");
        }
        let last = *paces.last().expect("paces");
        assert!(last > 200.0, "{paces:?}");
        assert_eq!(gate.lock().ceiling, Some(last));
        // The next 429 starts the creep from 1% again.
        gate.on_rate_limited(now, now + ms(20));
        assert!((gate.lock().probe_step - PROBE_STEP).abs() < 1e-12);
    }

    #[test]
    fn slow_start_grows_the_window_while_it_is_full_but_not_past_what_the_pace_needs() {
        let gate = Gate::new(256, true);
        let t0 = Instant::now();
        {
            let mut s = gate.lock();
            s.pace = Some(1000.0);
            s.in_flight = START_LIMIT;
        }
        // Every answer finds the window full: half a slot more each, though no request
        // found every slot taken.
        for i in 0..8 {
            gate.on_success(t0, t0 + ms(100 + i), None);
            let mut s = gate.lock();
            s.in_flight = s.limit_now();
        }
        assert_eq!(gate.limit(), START_LIMIT + 4);
        // Full of requests waiting for their paced start: the pace holds them, not the
        // window.
        gate.lock().slot_waiters = 1;
        for i in 0..8 {
            gate.on_success(t0, t0 + ms(100 + i), None);
        }
        assert_eq!(gate.limit(), START_LIMIT + 4);
        // At 100 a second over a 100 ms round trip, 16 in flight is all the pace needs.
        {
            let mut s = gate.lock();
            s.slot_waiters = 0;
            s.pace = Some(100.0);
        }
        for i in 0..100 {
            gate.on_success(t0, t0 + ms(100), None);
            let mut s = gate.lock();
            s.in_flight = s.limit_now();
            // The longest round trip seen was 107 ms.
            let needed = 100.0 * 0.107 * LITTLE_HEADROOM + 1.0;
            assert!(s.limit <= needed, "{i}: {} > {needed}", s.limit);
        }
        assert!(gate.limit() >= 15, "grew up to what the pace needs");
    }

    #[test]
    fn a_429_after_hundreds_of_answers_cuts_nothing_even_at_a_slow_pace() {
        // 50 a second: 200 answers are four seconds of them.
        let gate = past_slow_start(64, 50.0, Some(52.0));
        let t0 = Instant::now();
        for i in 0..RARE_429 {
            let sent = t0 + ms(20) * u32::try_from(i).expect("small");
            gate.on_success(sent, sent + ms(20), None);
        }
        let last = t0 + ms(20) * u32::try_from(RARE_429).expect("small");
        gate.on_rate_limited(last, last + ms(20));
        assert_eq!(gate.lock().pace, Some(50.0), "one in 201 is jitter");
        gate.on_rate_limited(last + ms(40), last + ms(60));
        assert!(
            gate.lock().pace.expect("paced") < 50.0,
            "two in a row are not"
        );
    }

    #[test]
    fn a_limit_measured_far_too_low_is_left_behind_within_seconds() {
        // A clump of arrivals refused by a small bucket measured 40 a second; the server
        // allows 500 and refuses nothing at the pace the probe reaches.
        let gate = past_slow_start(256, 40.0, Some(40.0));
        let mut now = Instant::now();
        for _ in 0..40 {
            now += PROBE_INTERVAL;
            gate.lock().pace_bound = true;
            gate.on_success(now - ms(20), now, None);
        }
        let pace = gate.lock().pace.expect("paced");
        assert!(pace > 400.0, "20 s of quiet probing reached only {pace}");
    }

    #[test]
    fn a_limit_measured_again_where_it_was_is_probed_less_and_less_often() {
        // One 429 episode: 60 requests at 125 a second against a bucket refilling at
        // `limit`, all answered after the last is sent (so they are one episode).
        fn episode(gate: &Gate, start: Instant, limit: f64) -> Instant {
            let every = ms(8);
            let answered = start + every * 60 + ms(1);
            let mut tokens = 0.0f64;
            for i in 0..60 {
                tokens += every.as_secs_f64() * limit;
                if tokens >= 1.0 {
                    tokens -= 1.0;
                    gate.on_success(start + every * i, answered, None);
                } else {
                    gate.on_rate_limited(start + every * i, answered);
                }
            }
            answered
        }
        let gate = past_slow_start(256, 125.0, None);
        let mut now = Instant::now();
        let backoffs: Vec<f64> = (0..5)
            .map(|_| {
                now = episode(&gate, now + ms(1), 100.0);
                gate.lock().probe_backoff
            })
            .collect();
        assert_eq!(
            backoffs,
            [1.0, 2.0, 4.0, 8.0, MAX_PROBE_BACKOFF],
            "{backoffs:?}"
        );
        // Under the confirmed limit, a step above it waits that many probe intervals.
        let pace = gate.lock().pace.expect("paced");
        let mut stepped_at = None;
        for i in 1..=20 {
            let t = now + PROBE_INTERVAL * i;
            gate.lock().pace_bound = true;
            gate.on_success(t - ms(20), t, None);
            if gate.lock().pace.expect("paced") > pace {
                stepped_at = Some(i);
                break;
            }
        }
        assert_eq!(stepped_at, Some(8), "pace {pace}");
        // A limit measured somewhere else (it dropped to 50) is probed at once again.
        // Dropped as the probe's step was taken, it first reads like a shallow bucket's
        // waste, and the pace falls only to the floor; the requests sent at the floor are
        // refused too, and their episode measures it.
        let answered = episode(&gate, now + PROBE_INTERVAL * 9, 50.0);
        let floor = gate.lock().pace.expect("paced");
        assert!(floor > 90.0, "first read as a shallow bucket: {floor}");
        episode(&gate, answered + ms(1), 50.0);
        assert!((gate.lock().probe_backoff - 1.0).abs() < 1e-12);
        let pace = gate.lock().pace.expect("paced");
        assert!(pace < 55.0, "then measured: {pace}");
    }

    #[test]
    fn a_bucket_one_request_deep_measured_at_half_the_pace_gives_way_to_the_pace_that_ran_quietly()
    {
        // Against a bucket one request deep refilling 50 a second, a pace of 55.7 is
        // refused every other request: 27.9 a second get through.
        let gate = past_slow_start(64, 44.6, Some(40.0));
        let mut now = Instant::now();
        // 44.6 a second runs a whole probe interval without a 429; the step goes above it.
        now += PROBE_INTERVAL;
        {
            let mut s = gate.lock();
            s.pace_bound = true;
            s.probe_step = 0.25;
        }
        gate.on_success(now - ms(50), now, None);
        let stepped = gate.lock().pace.expect("paced");
        assert!(stepped > 55.0, "{stepped}");
        // Twelve slots handed out at the step; eight requests are answered after the
        // eighth is sent.
        let every = Duration::from_secs_f64(1.0 / stepped);
        let start = now + ms(1);
        gate.lock().last_slot = Some(start + every * 11);
        let answered = start + every * 8;
        for i in 0..8 {
            let sent = start + every * i;
            if i % 2 == 0 {
                gate.on_success(sent, answered, None);
            } else {
                gate.on_rate_limited(sent, answered);
            }
        }
        {
            let s = gate.lock();
            let pace = s.pace.expect("paced");
            assert!(
                (pace - 44.6 * UNDER_CEILING).abs() < 0.01,
                "the pace that ran quietly, not half the step: {pace}"
            );
            assert_eq!(s.ceiling, Some(44.6));
            assert!(
                s.shallow,
                "a measure far under a quiet pace shows the bucket shallow"
            );
        }
        // The requests that left at the step before the cut reached them are refused as
        // those were, and move nothing.
        for i in 8..12 {
            let sent = start + every * i;
            if i % 2 == 0 {
                gate.on_success(sent, answered + every * i, None);
            } else {
                gate.on_rate_limited(sent, answered + every * i);
            }
        }
        assert_eq!(gate.lock().ceiling, Some(44.6));
    }

    #[test]
    fn a_cut_pace_spaces_the_very_next_request_from_the_last_one() {
        let gate = Gate::new(8, true);
        let t0 = Instant::now();
        let mut s = gate.lock();
        s.pace = Some(50.0);
        assert_eq!(s.reserve_slot(t0), Some(t0));
        assert_eq!(s.reserve_slot(t0), Some(t0 + ms(20)));
        // Spaced at the old pace, it would leave 20 ms after the last one.
        s.pace = Some(25.0);
        assert_eq!(s.reserve_slot(t0), Some(t0 + ms(60)));
    }

    #[test]
    fn under_a_stated_limit_a_429_widens_the_margin_instead_of_measuring_the_limit() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        let headers = RateHeaders {
            limit_per_minute: 12_000.0,
            remaining: Some(100.0),
            reset: Some(ms(5)),
        };
        gate.on_success(t0, t0 + ms(20), Some(headers));
        // Every other request refused, as a bucket one request deep does: a measure
        // would read about 100 a second.
        // One episode: all answered after the last is sent.
        let mut now = t0 + ms(20);
        let answered = now + ms(101);
        for i in 0..20 {
            let sent = now + ms(5) * i;
            if i % 2 == 0 {
                gate.on_success(sent, answered, Some(headers));
            } else {
                gate.on_rate_limited(sent, answered);
            }
        }
        {
            let s = gate.lock();
            assert!(
                s.shallow,
                "a 429 under a stated limit shows the bucket shallow"
            );
            assert_eq!(s.ceiling, Some(200.0), "the stated limit stands");
            let widened = 1.0 - (1.0 - UNDER_CEILING) * MARGIN_WIDENING;
            assert!((s.under - widened).abs() < 1e-12, "{}", s.under);
            assert!((s.pace.expect("paced") - 200.0 * widened).abs() < 1e-9);
        }
        // Each later episode widens it again, never past the widest.
        now = answered + ms(1);
        for i in 0..10 {
            let sent = now + ms(30) * i;
            gate.on_rate_limited(sent, sent + ms(20));
        }
        assert!((gate.lock().under - MIN_UNDER).abs() < 1e-12);
        // Each stretch of answers without a 429 narrows it a step, back to where it began.
        now += ms(500);
        for i in 0..(RARE_429 * 20) {
            let sent = now + ms(5) * u32::try_from(i).expect("small");
            gate.on_success(sent, sent + ms(20), Some(headers));
        }
        assert!((gate.lock().under - UNDER_CEILING).abs() < 1e-12);
    }

    #[test]
    fn against_a_shallow_bucket_a_backlog_leaves_a_whole_interval_apart() {
        let gate = past_slow_start(64, 100.0, None);
        let t0 = Instant::now();
        let mut s = gate.lock();
        s.shallow = true;
        assert_eq!(s.release(t0, None), None);
        // 10 ms a request: a backlog leaves 10 ms after the last, not sooner.
        assert_eq!(s.release(t0 + ms(1), None), Some(t0 + ms(10)));
        assert_eq!(s.release(t0 + ms(10), None), None);
        assert_eq!(s.release(t0 + ms(17), None), Some(t0 + ms(20)));
        // Unpaced (a fixed concurrency before any 429): nothing is held back.
        s.pace = None;
        assert_eq!(s.release(t0 + ms(17), None), None);
    }

    #[test]
    fn in_slow_start_or_before_a_bucket_shows_itself_shallow_a_backlog_leaves_half_an_interval_apart()
     {
        let slow = Gate::new(64, true);
        let deep = past_slow_start(64, 100.0, None);
        {
            // On Tokio's timer, which fires on whole milliseconds: half of 10 ms is enough,
            // even against a bucket shown shallow.
            let mut s = slow.lock();
            assert!(s.slow_start);
            s.pace = Some(100.0);
            s.shallow = true;
        }
        for gate in [slow, deep] {
            let t0 = Instant::now();
            let mut s = gate.lock();
            assert_eq!(s.release(t0, None), None);
            assert_eq!(s.release(t0 + ms(1), None), Some(t0 + ms(5)));
            assert_eq!(s.release(t0 + ms(5), None), None);
            assert_eq!(s.release(t0 + ms(7), None), Some(t0 + ms(10)));
        }
    }

    #[test]
    fn rate_limit_headers_set_the_pace_before_any_429_and_cap_the_probe() {
        let gate = Gate::new(64, true);
        let t0 = Instant::now();
        let headers = RateHeaders {
            limit_per_minute: 6000.0,
            remaining: Some(40.0),
            reset: Some(ms(600)),
        };
        gate.on_success(t0, t0 + ms(20), Some(headers));
        let pace = gate.lock().pace.expect("paced");
        assert!((pace - 100.0 * UNDER_CEILING).abs() < 1e-9, "{pace}");
        let mut now = t0 + ms(20);
        for _ in 0..20 {
            now += PROBE_INTERVAL;
            gate.lock().pace_bound = true;
            gate.on_success(now - ms(20), now, Some(headers));
        }
        let pace = gate.lock().pace.expect("paced");
        assert!(pace <= 100.0 * UNDER_CEILING + 1e-9, "{pace}");
        // An empty budget holds the next request until a token has come back.
        let empty = RateHeaders {
            remaining: Some(0.0),
            ..headers
        };
        now += PROBE_INTERVAL;
        gate.on_success(now, now + ms(1), Some(empty));
        let slot = gate.lock().reserve_slot(now + ms(1)).expect("a slot");
        assert!(slot >= now + ms(10), "{:?}", slot - now);
    }

    #[test]
    fn rate_limit_headers_are_read_as_openai_writes_them() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert_eq!(rate_headers(&h), None);
        h.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from_static("3000"),
        );
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("2999"),
        );
        h.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_static("20ms"),
        );
        assert_eq!(
            rate_headers(&h),
            Some(RateHeaders {
                limit_per_minute: 3000.0,
                remaining: Some(2999.0),
                reset: Some(ms(20)),
            })
        );
        h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("0"));
        assert_eq!(rate_headers(&h), None, "a zero limit says nothing usable");
        for (text, expected) in [
            ("1s", Some(ms(1000))),
            ("6m0s", Some(Duration::from_secs(360))),
            ("8.64s", Some(ms(8640))),
            ("1h2m3.5s", Some(ms(3_723_500))),
            ("1.5ms", Some(Duration::from_micros(1500))),
            ("", None),
            ("5x", None),
            ("s", None),
        ] {
            assert_eq!(parse_go_duration(text), expected, "{text:?}");
        }
    }

    #[tokio::test]
    async fn the_gate_holds_requests_beyond_the_limit_until_one_finishes() {
        let gate = Arc::new(Gate::new(2, false));
        let (a, _) = gate.acquire(Queue::Back).await;
        let (b, _) = gate.acquire(Queue::Back).await;
        let third = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Queue::Back).await.1 }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        assert!(gate.lock().concurrency_bound);
        drop(a);
        third
            .await
            .expect("the third request goes once one finished");
        drop(b);
    }

    #[tokio::test]
    async fn start_times_go_no_further_ahead_than_the_horizon_so_a_new_pace_reaches_the_next_requests()
     {
        let gate = Arc::new(past_slow_start(256, 20.0, None));
        gate.lock().limit = 256.0;
        let t0 = Instant::now();
        let requests: Vec<_> = (0..40)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.acquire(Queue::Back).await.1 })
            })
            .collect();
        tokio::time::sleep(ms(50)).await;
        {
            let mut s = gate.lock();
            // At 20 a second the horizon is four intervals: 200 ms, not the 2 s that 40
            // start times handed out at once would span.
            let last = s.last_slot.expect("start times handed out");
            assert!(last <= Instant::now() + ms(260), "{:?} ahead", last - t0);
            s.pace = Some(1000.0);
        }
        let mut latest = t0;
        for request in requests {
            latest = latest.max(request.await.expect("released"));
        }
        assert!(
            latest < t0 + ms(1000),
            "the last left {:?} after the first",
            latest - t0
        );
    }

    /// Spawns a request that waits at the gate in line at `queue` and holds its slot
    /// until told to let go; the first channel says when it got the slot.
    fn waiter(
        gate: &Arc<Gate>,
        queue: Queue,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (got_tx, got_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let gate = gate.clone();
        let task = tokio::spawn(async move {
            let (permit, _) = gate.acquire(queue).await;
            let _ = got_tx.send(());
            let _ = done_rx.await;
            drop(permit);
        });
        (got_rx, done_tx, task)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_next_page_goes_ahead_of_every_read_not_yet_begun() {
        let gate = Arc::new(Gate::new(1, false));
        let (first, _) = gate.acquire(Queue::Back).await;
        let (mut back_got, back_done, back) = waiter(&gate, Queue::Back);
        settle().await;
        let (mut front_got, front_done, front) = waiter(&gate, Queue::Front);
        settle().await;
        assert_eq!(gate.lock().front_waiters, 1);

        drop(first);
        settle().await;
        assert!(
            front_got.try_recv().is_ok(),
            "the slot goes to the request in front"
        );
        assert!(
            back_got.try_recv().is_err(),
            "the one at the back still waits"
        );
        assert_eq!(gate.lock().front_waiters, 0);

        front_done
            .send(())
            .expect("the front request holds its slot");
        front.await.expect("the front request finishes");
        settle().await;
        assert!(back_got.try_recv().is_ok(), "then the back gets it");
        back_done.send(()).expect("the back request holds its slot");
        back.await.expect("the back request finishes");
    }

    #[tokio::test]
    async fn a_request_in_front_that_is_cancelled_leaves_a_free_slot_to_the_back() {
        let gate = Arc::new(Gate::new(1, false));
        // One request on the wire, counted by hand so that its end can wake no one.
        gate.lock().in_flight = 1;
        let (mut back_got, back_done, back) = waiter(&gate, Queue::Back);
        let (_front_got, _front_done, front) = waiter(&gate, Queue::Front);
        settle().await;
        // The slot comes free while the request in front is about to take it...
        gate.lock().in_flight = 0;
        // ...and then it is cancelled: the request at the back must look again.
        front.abort();
        let _ = front.await;
        settle().await;
        assert_eq!(gate.lock().front_waiters, 0);
        assert!(
            back_got.try_recv().is_ok(),
            "no free slot is left idle behind a cancelled request"
        );
        back_done.send(()).expect("the back request holds its slot");
        back.await.expect("the back request finishes");
    }

    #[tokio::test]
    async fn a_back_request_woken_for_a_free_slot_passes_it_to_the_one_in_front() {
        let gate = Arc::new(Gate::new(2, false));
        gate.lock().in_flight = 2;
        let (mut back_got, back_done, back) = waiter(&gate, Queue::Back);
        settle().await;
        let (mut front_got, front_done, front) = waiter(&gate, Queue::Front);
        settle().await;
        // A slot comes free and the wake-up reaches the back of the line.
        gate.lock().in_flight = 1;
        gate.notify.notify_one();
        settle().await;
        assert!(front_got.try_recv().is_ok(), "the front got the free slot");
        assert!(back_got.try_recv().is_err(), "the back gave way");
        gate.lock().in_flight -= 1;
        gate.wake_one();
        settle().await;
        assert!(
            back_got.try_recv().is_ok(),
            "the next free slot is the back's"
        );
        front_done
            .send(())
            .expect("the front request holds its slot");
        back_done.send(()).expect("the back request holds its slot");
        front.await.expect("the front request finishes");
        back.await.expect("the back request finishes");
    }

    /// A server's token bucket refilling at `rate` a second and holding `depth`, full at
    /// the start: what a request arriving at `at` gets.
    struct Bucket {
        rate: f64,
        depth: f64,
        tokens: f64,
        at: Option<Instant>,
    }

    impl Bucket {
        fn new(rate: f64, depth: f64) -> Self {
            Self {
                rate,
                depth,
                tokens: depth,
                at: None,
            }
        }

        fn accepts(&mut self, at: Instant) -> bool {
            let since = self
                .at
                .map_or(0.0, |last| at.saturating_duration_since(last).as_secs_f64());
            self.tokens = (self.tokens + since * self.rate).min(self.depth);
            self.at = Some(at);
            let accepted = self.tokens >= 1.0;
            if accepted {
                self.tokens -= 1.0;
            }
            accepted
        }
    }

    /// Plays a crawl from its first request for `seconds` against `bucket`: every request
    /// waits in line, leaves when the gate releases it, arrives as it leaves, and is
    /// answered `rtt` later. Returns the 429s.
    fn crawl(gate: &Gate, bucket: &mut Bucket, rtt: Duration, seconds: u64) -> usize {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(seconds);
        gate.lock().in_line = 5_000;
        let mut answers: VecDeque<(Instant, Instant, bool)> = VecDeque::new();
        let mut refused = 0;
        let mut now = t0;
        while now < end {
            let slot = gate.lock().reserve_slot(now);
            let mut at = slot.map_or(now, |slot| slot.max(now));
            loop {
                while let Some((sent, answered, rejected)) = answers
                    .front()
                    .copied()
                    .filter(|(_, answered, _)| *answered <= at)
                {
                    answers.pop_front();
                    if rejected {
                        gate.on_rate_limited(sent, answered);
                    } else {
                        gate.on_success(sent, answered, None);
                    }
                }
                let mut s = gate.lock();
                if let Some(later) = s.release(at, slot) {
                    at = later;
                } else {
                    s.released(at);
                    break;
                }
            }
            let accepted = bucket.accepts(at);
            refused += usize::from(!accepted);
            answers.push_back((at, at + rtt, !accepted));
            // Sending takes a little time: no two requests leave at one instant.
            now = at + Duration::from_micros(10);
        }
        refused
    }

    #[test]
    fn against_a_bucket_one_request_deep_pairs_find_the_limit_the_measure_reads_half_of() {
        let gate = Gate::new(256, true);
        let refused = crawl(&gate, &mut Bucket::new(200.0, 1.0), ms(20), 6);
        let s = gate.lock();
        assert!(s.one_deep && s.shallow, "found one deep: {s:?}");
        let ceiling = s.ceiling.expect("a limit");
        let pace = s.pace.expect("paced");
        // The measure out of slow start reads about half the limit, and the probe's
        // steps from there were cut by every clump of arrivals.
        assert!((194.0..=200.0).contains(&ceiling), "{ceiling}");
        assert!((190.0..=200.0).contains(&pace), "{pace}");
        assert!(refused < 60, "{refused}");
        assert!(s.search.is_none(), "the search has ended");
    }

    /// A gate searching a bucket one request deep between `low` and `high`, at 200 ms.
    fn searching(low: f64, high: f64) -> Gate {
        searching_with_line(low, high, 5_000)
    }

    /// [`searching`], with `in_line` requests waiting at the gate when the round is armed.
    fn searching_with_line(low: f64, high: f64, in_line: usize) -> Gate {
        let gate = past_slow_start(256, low * UNDER_CEILING, Some(low));
        let mut s = gate.lock();
        s.in_line = in_line;
        s.one_deep = true;
        s.shallow = true;
        s.rtt_short = Some(0.2);
        s.search = Some(Search::new(low, high));
        s.next_round(Instant::now());
        drop(s);
        gate
    }

    #[test]
    fn a_search_round_s_pairs_take_slots_one_after_another_across_the_bracket() {
        let gate = searching(100.0, 210.0);
        let t0 = Instant::now();
        let mut s = gate.lock();
        let slots: Vec<Instant> = (0..8).filter_map(|_| s.reserve_slot(t0)).collect();
        assert_eq!(s.slotted.len(), MAX_RUNGS as usize, "{:?}", s.slotted);
        let interval = Duration::from_secs_f64(1.0 / s.pace.expect("paced"));
        let mut rate = 100.0;
        for (k, pair) in s.slotted.iter().enumerate() {
            assert_eq!(pair.first_slot, slots[2 * k]);
            assert_eq!(pair.second_slot, Some(slots[2 * k + 1]));
            assert_eq!(slots[2 * k + 1], slots[2 * k] + pair.gap, "pair {k}");
            if k > 0 {
                assert_eq!(pair.first_slot, slots[2 * k - 1] + interval, "pair {k}");
            }
            // Spread evenly (geometrically) between the ends, from the bottom up.
            let meant = 1.0 / pair.gap.as_secs_f64();
            let expected = 100.0 * 2.1_f64.powf((k + 1) as f64 / 5.0);
            assert!((meant / expected - 1.0).abs() < 0.001, "{meant} {expected}");
            assert!(meant > rate);
            rate = meant;
        }
        assert_eq!(s.pair, PairTest::Done, "no fifth");
    }

    /// Sends `count` requests one after another, each at its start time (or as soon after
    /// it as the gate lets it leave); their release times.
    fn send_round(s: &mut GateState, count: usize) -> Vec<Instant> {
        let mut now = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..count {
            let slot = s.reserve_slot(now).expect("paced");
            let mut at = slot.max(now);
            while let Some(later) = s.release(at, Some(slot)) {
                at = later;
            }
            s.released(at);
            sent.push(at);
            now = at;
        }
        sent
    }

    /// Answers pairs sent back to back (`sent`, two by two) as a bucket one request deep
    /// refilling 150 times a second does: the second is refused when it left closer than
    /// one refill after the first.
    fn answer_pairs_at_150(gate: &Gate, sent: &[Instant]) {
        for pair in sent.chunks(2) {
            let (first, second) = (pair[0], pair[1]);
            let gap = second.saturating_duration_since(first).as_secs_f64();
            gate.on_success(first, first + ms(200), None);
            if 1.0 / gap > 150.0 {
                gate.on_rate_limited(second, second + ms(200));
            } else {
                gate.on_success(second, second + ms(200), None);
            }
        }
    }

    #[test]
    fn a_search_round_ends_on_its_last_answer_and_narrows_the_bracket_to_its_rungs() {
        let gate = searching(100.0, 210.0);
        let sent = send_round(&mut gate.lock(), 8);
        assert_eq!(gate.lock().flying.len(), 4);
        // A bucket at 150 a second: the two lower rungs (116 and 135) are accepted, the
        // upper two (157 and 182) refused.
        answer_pairs_at_150(&gate, &sent);
        let s = gate.lock();
        let search = s.search.expect("searching on");
        assert!((130.0..136.0).contains(&search.low), "{search:?}");
        assert!((156.0..159.0).contains(&search.high), "{search:?}");
        assert_eq!(search.rounds, 2, "the next round");
        assert!(matches!(s.pair, PairTest::Armed { .. }));
        assert_eq!(s.last_cut, None, "the refused seconds begin no episode");
    }

    #[test]
    fn a_search_sends_no_round_once_the_crawl_is_ending_and_keeps_its_low_end() {
        // A wide bracket is searched however short the line.
        let wide = searching_with_line(100.0, 210.0, 0);
        assert!(
            matches!(wide.lock().pair, PairTest::Armed { .. }),
            "a wide bracket"
        );
        let gate = searching(100.0, 210.0);
        let sent = send_round(&mut gate.lock(), 8);
        // Fewer requests wait at the gate than the pace sends in two seconds.
        gate.lock().in_line = 100;
        answer_pairs_at_150(&gate, &sent);
        let s = gate.lock();
        assert!(s.search.is_none(), "{:?}", s.search);
        assert!(s.searched_at.is_some());
        assert!(!matches!(s.pair, PairTest::Armed { .. }), "no pair armed");
        let ceiling = s.ceiling.expect("the low end");
        assert!((130.0..136.0).contains(&ceiling), "{ceiling}");
        assert!(s.pace.expect("paced") < ceiling);
    }

    #[test]
    fn a_pair_accepted_above_one_refused_does_not_lift_the_low_end() {
        let gate = searching(190.0, 210.0);
        let mut s = gate.lock();
        let mut search = s.search.expect("searching");
        search.high = 202.0;
        search.high_guessed = false;
        s.search = Some(search);
        let t0 = Instant::now();
        let pair = |gap: f64| SentPair {
            gap: Duration::from_secs_f64(gap),
            first: t0,
            second: t0 + Duration::from_secs_f64(gap),
            pause: None,
            first_refused: Some(false),
            second_refused: None,
            first_test: false,
        };
        // A pair 4.73 ms apart accepted against a top of 202 a second.
        s.pair_result(pair(0.004_73), false, t0);
        let search = s.search.expect("searching");
        assert_eq!(search.low, 190.0, "{search:?}");
        assert!(search.high_guessed && search.high > 202.0, "{search:?}");
        // And a pair refused under the low end says nothing.
        s.pair_result(pair(0.005_6), true, t0);
        assert_eq!(s.search.expect("searching").low, 190.0);
    }

    #[test]
    fn at_a_bucket_one_deep_a_lone_429_is_jitter_but_a_window_of_them_is_an_episode() {
        let gate = past_slow_start(256, 190.0, Some(193.0));
        gate.lock().one_deep = true;
        let t0 = Instant::now();
        // A 429, then most of a second at 70 a second, then 190 (a search raised the
        // pace): the window's measure reads far under the pace, but the next 429 comes
        // alone.
        gate.on_rate_limited(t0, t0 + ms(20));
        {
            let mut s = gate.lock();
            s.last_cut = None;
            s.pace = Some(190.0);
        }
        let every = Duration::from_micros(5_300);
        for i in 1..=60 {
            let at = t0 + ms(14) * i;
            gate.on_success(at, at + ms(20), None);
        }
        let from = t0 + ms(845);
        for i in 0..20 {
            let at = from + every * i;
            gate.on_success(at, at + ms(20), None);
        }
        let lone = from + every * 20;
        gate.on_rate_limited(lone, lone + ms(20));
        let s = gate.lock();
        let measured = s.measured_limit().expect("a measure");
        assert!(measured < 190.0 * JITTER_MEASURE, "{measured}");
        assert_eq!(s.last_cut, None, "jitter");
        drop(s);
        // One 429 in every eight answers: a pace over the limit, whatever it measures.
        let mut at = lone;
        for i in 0..40 {
            at += every;
            if i % 8 == 7 {
                gate.on_rate_limited(at, at + ms(20));
            } else {
                gate.on_success(at, at + ms(20), None);
            }
            if gate.lock().last_cut.is_some() {
                return;
            }
        }
        panic!("no episode: {:?}", gate.lock());
    }

    #[test]
    fn a_crawl_after_one_that_found_the_bucket_one_deep_starts_one_deep_and_never_steps_above() {
        let gate = Gate::new(256, true);
        gate.start_crawl(Some((200.0, Some(1.0))));
        let refused = crawl(&gate, &mut Bucket::new(200.0, 1.0), ms(200), 6);
        let s = gate.lock();
        assert!(s.one_deep, "{s:?}");
        assert_eq!(s.depth_tests, 0, "no depth test");
        let pace = s.pace.expect("paced");
        assert!((195.0..=200.0).contains(&pace), "{pace}");
        assert!(refused < 5, "{refused}");
        drop(s);
        assert_eq!(gate.learned(), Some((200.0, Some(1.0))), "and says so");
    }

    #[test]
    fn against_a_deeper_bucket_the_depth_test_is_accepted_and_the_measure_stands() {
        let gate = Gate::new(256, true);
        crawl(&gate, &mut Bucket::new(200.0, 20.0), ms(20), 6);
        let s = gate.lock();
        assert_eq!(s.depth_tests, 1, "tested once: {s:?}");
        assert_eq!(s.pair, PairTest::Done);
        assert!(!s.one_deep && s.search.is_none());
    }

    #[test]
    fn a_depth_test_paused_too_briefly_for_the_limit_measured_since_says_nothing() {
        // Armed in a first episode while the measure, from a flood's 429s, still read
        // three times the limit: four intervals at that pace are 2.5 ms, in which a bucket
        // 500 deep refills by little more than one token.
        let gate = past_slow_start(256, 1581.0, Some(1605.0));
        let t0 = Instant::now();
        let mut s = gate.lock();
        let before = s.reserve_slot(t0).expect("paced");
        assert_eq!(s.release(before, Some(before)), None);
        s.pair = PairTest::Untested;
        s.arm_depth_test(before);
        let first = s.reserve_slot(before).expect("paced");
        let second = s.reserve_slot(before).expect("paced");
        assert_eq!(first, second, "back to back");
        assert_eq!(s.release(first, Some(first)), None);
        let left = first + Duration::from_micros(50);
        assert_eq!(s.release(left, Some(second)), None);
        // The episode's later 429s bring the measure down to 509 before the pair's
        // answers come back, the second refused.
        s.ceiling = Some(509.0);
        s.pace = Some(501.0);
        drop(s);
        gate.on_rate_limited(left, left + ms(20));
        gate.on_success(first, first + ms(20), None);
        let mut s = gate.lock();
        assert!(!s.one_deep && s.search.is_none(), "{s:?}");
        assert!(
            matches!(s.pair, PairTest::Armed { .. }),
            "tested again: {:?}",
            s.pair
        );
        // The next test pauses four intervals at the pace now after the last request,
        // and reads one deep when its second is refused.
        let now = left + ms(20);
        let first = s.reserve_slot(now).expect("paced");
        let second = s.reserve_slot(now).expect("paced");
        assert!(first >= now + Duration::from_secs_f64(PAIR_PAUSE / 501.0));
        assert_eq!(s.release(first, Some(first)), None);
        let left = first + Duration::from_micros(50);
        assert_eq!(s.release(left, Some(second)), None);
        drop(s);
        gate.on_rate_limited(left, left + ms(20));
        gate.on_success(first, first + ms(20), None);
        assert!(gate.lock().one_deep);
    }

    #[test]
    fn the_depth_test_s_refused_second_begins_no_episode() {
        let gate = past_slow_start(256, 98.5, Some(100.0));
        let t0 = Instant::now();
        let mut s = gate.lock();
        s.last_measure = Some(100.0);
        s.pair = PairTest::Armed {
            since: t0,
            gap: Duration::ZERO,
        };
        let first = s.reserve_slot(t0).expect("paced");
        let second = s.reserve_slot(t0).expect("paced");
        assert_eq!(first, second, "back to back");
        assert_eq!(s.release(first, Some(first)), None);
        let left = first + Duration::from_micros(50);
        assert_eq!(
            s.release(left, Some(second)),
            None,
            "no spacing between the two"
        );
        drop(s);
        gate.on_rate_limited(left, left + ms(20));
        assert_eq!(gate.lock().last_cut, None, "no episode");
        gate.on_success(first, first + ms(20), None);
        let s = gate.lock();
        assert!(s.one_deep);
        let search = s.search.expect("searching");
        assert_eq!((search.low, search.high), (100.0, 100.0 * SEARCH_TOP));
        assert_eq!(s.pace, Some(98.5), "no cut");
        assert!(
            matches!(s.pair, PairTest::Armed { .. }),
            "the search's first pair"
        );
    }

    #[test]
    fn a_depth_test_whose_first_is_refused_is_sent_again_at_once_at_most_three_times() {
        let gate = past_slow_start(256, 98.5, Some(100.0));
        gate.lock().pair = PairTest::Untested;
        let t0 = Instant::now();
        // The probe's turn arms the first test; each one that says nothing arms the next
        // on its answer, with no turn of the probe in between.
        gate.lock().pace_bound = true;
        gate.on_success(t0 + PROBE_INTERVAL - ms(20), t0 + PROBE_INTERVAL, None);
        let mut now = t0 + PROBE_INTERVAL;
        for round in 1..=DEPTH_TESTS {
            let mut s = gate.lock();
            assert!(
                matches!(s.pair, PairTest::Armed { .. }),
                "armed, round {round}"
            );
            let first = s.reserve_slot(now).expect("paced");
            let second = s.reserve_slot(now).expect("paced");
            assert!(first >= now + Duration::from_secs_f64(PAIR_PAUSE / 98.5));
            assert_eq!(s.release(first, Some(first)), None);
            let left = first + Duration::from_micros(50);
            assert_eq!(s.release(left, Some(second)), None);
            drop(s);
            // Another request's late arrival took the token: the first is refused, and
            // the test says nothing.
            gate.on_rate_limited(first, first + ms(20));
            gate.on_success(left, left + ms(20), None);
            now = left + ms(20);
            let mut s = gate.lock();
            if round == DEPTH_TESTS {
                assert_eq!(s.pair, PairTest::Untested, "no fourth");
            }
            // The 429 was an episode of its own; this test is not about its cut.
            s.pace = Some(98.5);
            s.ceiling = Some(100.0);
            s.last_cut = None;
        }
        // Nor at the probe's next turn.
        now += PROBE_INTERVAL * 2;
        gate.lock().pace_bound = true;
        gate.on_success(now - ms(20), now, None);
        assert_eq!(
            gate.lock().pair,
            PairTest::Untested,
            "no fourth at the probe"
        );
        assert!(!gate.lock().one_deep);
    }

    #[test]
    fn against_a_bucket_one_deep_a_429_that_measures_no_limit_under_the_pace_cuts_nothing() {
        let gate = past_slow_start(256, 190.0, Some(193.0));
        gate.lock().one_deep = true;
        let t0 = Instant::now();
        let every = Duration::from_micros(5_300);
        for i in 0..100 {
            let at = t0 + every * i;
            gate.on_success(at, at + ms(20), None);
        }
        let clump = t0 + ms(531);
        gate.on_rate_limited(clump, clump + ms(20));
        {
            let s = gate.lock();
            assert_eq!(s.pace, Some(190.0));
            assert_eq!(s.last_cut, None);
        }
        for i in 1..13 {
            let at = clump + every * i;
            gate.on_success(at, at + ms(20), None);
        }
        // A pace over its limit is refused every other request, which measures half the
        // pace: that is an episode, and the limit is searched for again between the two.
        let mut s = gate.lock();
        s.pace = Some(260.0);
        drop(s);
        let from = t0 + ms(600);
        // Until the episode begins: the crawl slows down then, and later answers are
        // another matter.
        for i in 0..20u32 {
            let at = from + Duration::from_micros(3_850) * i;
            if i % 2 == 0 {
                gate.on_rate_limited(at, at + ms(20));
            } else {
                gate.on_success(at, at + ms(20), None);
            }
            if gate.lock().last_cut.is_some() {
                break;
            }
        }
        let s = gate.lock();
        assert!(s.last_cut.is_some());
        // Between the measure, which a bucket one deep never reads high, and the pace.
        let search = s.search.expect("searching again");
        assert!((130.0..=200.0).contains(&search.low), "{search:?}");
        assert!((259.0..=261.0).contains(&search.high), "{search:?}");
    }

    /// A fresh crawl's first three requests, each released at its slot: the first
    /// alone, then the depth test's two back to back, 20 µs apart. Their send times.
    fn first_three(gate: &Gate) -> [Instant; 3] {
        let mut s = gate.lock();
        let t0 = Instant::now();
        let first = s.reserve_slot(t0).expect("paced");
        let second = s.reserve_slot(t0).expect("paced");
        let third = s.reserve_slot(t0).expect("paced");
        assert!(second > first, "the project list leaves alone");
        assert_eq!(second, third, "the depth test's two share a slot");
        let left = [first, second, third + Duration::from_micros(20)];
        for (at, slot) in left.iter().zip([first, second, third]) {
            assert_eq!(s.release(*at, Some(slot)), None);
            s.released(*at);
        }
        left
    }

    #[test]
    fn a_crawl_whose_second_and_third_requests_find_the_bucket_one_deep_searches_for_its_limit_at_once()
     {
        // Either of the two may reach the bucket first: the one refused, whichever, is
        // the test's answer and no episode.
        for refused in [1, 2] {
            let gate = Gate::new(256, true);
            gate.start_crawl(None);
            let sent = first_three(&gate);
            for (i, at) in sent.iter().enumerate() {
                if i == refused {
                    gate.on_rate_limited(*at, *at + ms(400));
                } else {
                    gate.on_success(*at, *at + ms(400), None);
                }
            }
            let s = gate.lock();
            assert!(s.one_deep && s.shallow, "refused {refused}");
            assert!(!s.slow_start, "refused {refused}");
            assert_eq!(s.first_refused, None, "no episode");
            assert_eq!(s.last_cut, None, "no episode");
            let pace = s.pace.expect("paced");
            let search = s.search.expect("searching");
            assert_eq!(search.low, pace);
            assert_eq!(search.high, pace * START_SEARCH_SPAN);
            // Its first round is under way: four pairs across the bracket at the pace's
            // 12 a round trip, the first armed.
            let round = search.round.expect("a round");
            assert_eq!((round.rungs, round.armed), (4, 1));
            assert!(matches!(s.pair, PairTest::Armed { .. }));
        }
    }

    #[test]
    fn a_crawl_whose_depth_test_is_accepted_or_refused_twice_ramps_up_as_before() {
        for refused in [&[][..], &[1, 2][..]] {
            let gate = Gate::new(256, true);
            gate.start_crawl(None);
            let sent = first_three(&gate);
            for (i, at) in sent.iter().enumerate() {
                if refused.contains(&i) {
                    gate.on_rate_limited(*at, *at + ms(400));
                } else {
                    gate.on_success(*at, *at + ms(400), None);
                }
            }
            let s = gate.lock();
            assert!(!s.one_deep && !s.shallow, "refused {refused:?}");
            assert!(s.slow_start, "refused {refused:?}");
            assert_eq!(s.search, None, "refused {refused:?}");
            // Asked again after the first measure, as without it.
            assert_eq!(s.pair, PairTest::Untested, "refused {refused:?}");
        }
        // Nor is there one with a limit known from an earlier crawl, or a fixed
        // concurrency.
        let known = Gate::new(256, true);
        known.start_crawl(Some((200.0, Some(1.0))));
        let fixed = Gate::new(8, false);
        fixed.start_crawl(None);
        for gate in [known, fixed] {
            let mut s = gate.lock();
            let t0 = Instant::now();
            for _ in 0..3 {
                s.reserve_slot(t0);
            }
            assert_eq!(s.pair, PairTest::Untested);
            assert!(s.slotted.is_empty());
        }
    }

    #[test]
    fn a_wide_search_whose_only_pair_is_accepted_at_its_middle_keeps_its_top() {
        // With one pair a round (a short round trip at a slow pace), the round's top rung
        // is the bracket's middle: accepted, the bracket's top is no reason to come down.
        let gate = Gate::new(256, true);
        let mut s = gate.lock();
        let now = Instant::now();
        s.search = Some(Search::new(25.0, 25.0 * START_SEARCH_SPAN));
        s.next_round(now);
        let PairTest::Armed { gap, .. } = s.pair else {
            panic!("a pair armed: {:?}", s.pair);
        };
        assert_eq!(
            s.search.and_then(|search| search.round).map(|r| r.rungs),
            Some(1)
        );
        s.pair = PairTest::Done;
        let pair = SentPair {
            gap,
            first: now,
            second: now + gap,
            pause: None,
            first_refused: Some(false),
            second_refused: Some(false),
            first_test: false,
        };
        s.pair_result(pair, false, now + ms(40));
        let search = s.search.expect("searching");
        assert!((135.0..141.5).contains(&search.low), "{search:?}");
        assert_eq!(search.high, 25.0 * START_SEARCH_SPAN, "{search:?}");
    }

    #[test]
    fn a_first_depth_test_answered_after_another_request_was_refused_says_nothing() {
        // The project list, sent before the two, was refused: the bucket was not full, and
        // the test's refusal says nothing of its depth.
        let gate = Gate::new(256, true);
        gate.start_crawl(None);
        let [list, first, second] = first_three(&gate);
        gate.on_rate_limited(list, list + ms(20));
        gate.on_success(first, first + ms(20), None);
        gate.on_rate_limited(second, second + ms(20));
        let s = gate.lock();
        assert!(!s.one_deep && !s.shallow, "{s:?}");
        assert_eq!(s.search, None);
        assert_eq!(s.pair, PairTest::Untested, "asked again later");
        drop(s);
        // Nor once a limit has been measured: armed again at once, as any test that says
        // nothing, with its pause.
        let gate = Gate::new(256, true);
        gate.start_crawl(None);
        let [_, first, second] = first_three(&gate);
        gate.lock().ceiling = Some(100.0);
        gate.on_success(first, first + ms(20), None);
        gate.on_rate_limited(second, second + ms(20));
        let s = gate.lock();
        assert!(!s.one_deep && !s.shallow, "{s:?}");
        assert!(matches!(s.pair, PairTest::Armed { .. }), "{:?}", s.pair);
        assert_eq!(s.depth_tests, 1);
    }
}
