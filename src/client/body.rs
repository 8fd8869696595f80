//! Reading an answer's body within bounds: at most `cap` bytes of one answer, and at
//! most a few large answers held at once across the whole client.
//!
//! `[openai] max_response_bytes` bounds one answer, but not how many are held together.
//! Against a server that sent 32 MiB to every read, the bodies being read under the gate
//! and those waiting for a blocking thread to count and parse them reached 4.1 GiB at the
//! adaptive concurrency (182 MiB at `concurrency = 1`). Real answers are small (a page of
//! 100 keys is about 30 kB; the largest, a month of costs for 200 projects, 3.6 MB), so
//! an answer that is or grows past [`LARGE_ANSWER`] needs one of a few places to be read
//! on, and keeps its place until it has been parsed.
//!
//! An answer that finds every place taken is dropped unread ([`Capped::Crowded`]) and
//! asked for again once a place is free, rather than waited on with its stream open:
//! over HTTP/2 every request shares one connection, whose flow-control window the unread
//! answers of waiting requests fill (hyper's 5 MB is three answers' 2 MB each), after
//! which the answers holding the places receive nothing more and every read on the
//! connection times out. Dropped, a stream is reset and its window given back. So no
//! read waits on another in a circle: an answer holding a place waits only on its server
//! and the parser, and a read waiting for a place holds nothing, not even its request.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An answer this large needs a place among [`LargeAnswers`] to be read further: above
/// every page a real list sends, below a large month of costs.
pub(crate) const LARGE_ANSWER: usize = 1 << 20;

/// The bytes of large answers held at once; the places are this divided by
/// `max_response_bytes` (2 at the default 32 MiB), at least one and at most
/// [`MOST_PLACES`].
const LARGE_ANSWERS_BUDGET: u64 = 64 << 20;

/// The most places, however small `max_response_bytes` is: enough that large answers of
/// a few MiB (costs) never queue behind each other.
const MOST_PLACES: u64 = 16;

/// The places for answers larger than [`LARGE_ANSWER`], shared by every read of a client.
#[derive(Clone, Debug)]
pub(crate) struct LargeAnswers {
    places: Arc<Semaphore>,
}

/// A place among [`LargeAnswers`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    _permit: OwnedSemaphorePermit,
}

impl LargeAnswers {
    /// Places for large answers when one answer may be `max_response_bytes` long.
    pub(crate) fn new(max_response_bytes: u64) -> Self {
        let places = (LARGE_ANSWERS_BUDGET / max_response_bytes.max(1)).clamp(1, MOST_PLACES);
        Self {
            places: Arc::new(Semaphore::new(usize::try_from(places).unwrap_or(1))),
        }
    }

    /// How many large answers may be held at once.
    #[cfg(test)]
    fn places(&self) -> usize {
        self.places.available_permits()
    }

    /// Waits for a place. `None` only if the places were closed, which nothing does: the
    /// answer is then read without one rather than never.
    pub(crate) async fn take(&self) -> Option<Place> {
        let permit = Arc::clone(&self.places).acquire_owned().await.ok()?;
        Some(Place { _permit: permit })
    }

    /// A place if one is free now.
    fn try_take(&self) -> Option<Place> {
        let permit = Arc::clone(&self.places).try_acquire_owned().ok()?;
        Some(Place { _permit: permit })
    }
}

/// A whole answer body and, when it is large, the place it holds until it is dropped.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The body's bytes.
    pub(crate) bytes: Vec<u8>,
    /// Held until the body is dropped, after its parse; `None` for an answer under
    /// [`LARGE_ANSWER`].
    pub(crate) _place: Option<Place>,
}

impl From<Vec<u8>> for Answer {
    /// A body that holds no place (read without [`LargeAnswers`]).
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            _place: None,
        }
    }
}

/// A body read up to a cap: all of it, the first `cap` bytes of a longer one, or none of
/// a large one that found no place.
pub(crate) enum Capped {
    /// The whole body.
    Whole(Answer),
    /// Its first `cap` bytes; the rest was never read.
    Cut(Vec<u8>),
    /// A large answer that found every place taken, dropped unread (what had been read of
    /// it, under [`LARGE_ANSWER`], too): to be asked for again holding a place.
    Crowded,
}

/// Streams a body chunk by chunk with a running count, so a body larger than `cap` costs
/// at most `cap` bytes (plus one chunk) of memory, whatever its length. With `large`, a
/// body that is or grows past [`LARGE_ANSWER`] needs a place there: `place` when the
/// caller took one beforehand, else one free now, else the body is given up
/// ([`Capped::Crowded`]).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    large: Option<&LargeAnswers>,
    mut place: Option<Place>,
) -> Result<Capped, reqwest::Error> {
    let mut body = Vec::new();
    let mut reserved = false;
    if let Some(large) = large
        && let Some(declared) = response.content_length()
        && usize::try_from(declared).is_ok_and(|n| n >= LARGE_ANSWER)
    {
        if place.is_none() {
            place = large.try_take();
            if place.is_none() {
                return Ok(Capped::Crowded);
            }
        }
        // Reserved once, rather than grown by doubling, whose last copy holds one and a
        // half times the body (the caller has refused a declared length over the cap).
        body.reserve(usize::try_from(declared).unwrap_or(cap).min(cap));
        reserved = true;
    }
    while let Some(chunk) = response.chunk().await? {
        if let Some(large) = large
            && !reserved
            && body.len().saturating_add(chunk.len()) >= LARGE_ANSWER
        {
            if place.is_none() {
                place = large.try_take();
                if place.is_none() {
                    return Ok(Capped::Crowded);
                }
            }
            // Its length unknown, room for the most it may be: pages never written stay
            // out of memory, and no copy is made as it grows.
            body.reserve_exact(cap.saturating_sub(body.len()));
            reserved = true;
        }
        if chunk.len() > cap - body.len() {
            let room = cap - body.len();
            body.extend_from_slice(&chunk[..room]);
            // Dropping the response here closes the connection: the rest is never read.
            return Ok(Capped::Cut(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped::Whole(Answer {
        bytes: body,
        _place: place,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_places_hold_the_budget_in_answers_of_the_largest_size() {
        assert_eq!(LargeAnswers::new(32 << 20).places(), 2);
        assert_eq!(LargeAnswers::new(8 << 20).places(), 8);
        // A bound larger than the budget still lets one large answer through.
        assert_eq!(LargeAnswers::new(1 << 30).places(), 1);
        assert_eq!(LargeAnswers::new(1 << 10).places(), 16);
        assert_eq!(LargeAnswers::new(0).places(), 16);
    }

    /// An answer of `len` bytes, as reqwest gives it (its length known).
    fn response(len: usize) -> reqwest::Response {
        reqwest::Response::from(axum::http::Response::new(vec![b' '; len]))
    }

    #[tokio::test]
    async fn a_small_answer_is_read_without_a_place() {
        let large = LargeAnswers::new(1 << 30);
        let _only = large.take().await;
        let read = read_capped(response(LARGE_ANSWER - 1), 32 << 20, Some(&large), None);
        match read.await.expect("read") {
            Capped::Whole(answer) => {
                assert_eq!(answer.bytes.len(), LARGE_ANSWER - 1);
                assert!(answer._place.is_none());
            }
            Capped::Cut(_) | Capped::Crowded => panic!("not read whole"),
        }
    }

    #[tokio::test]
    async fn a_large_answer_finding_no_place_is_given_up_and_read_whole_with_one() {
        let large = LargeAnswers::new(1 << 30);
        let only = large.take().await;
        let read = read_capped(response(LARGE_ANSWER), 32 << 20, Some(&large), None);
        assert!(
            matches!(read.await.expect("read"), Capped::Crowded),
            "given up while the only place is held"
        );
        drop(only);
        let place = large.take().await;
        let read = read_capped(response(LARGE_ANSWER), 32 << 20, Some(&large), place);
        let answer = match read.await.expect("read") {
            Capped::Whole(answer) => answer,
            Capped::Cut(_) | Capped::Crowded => panic!("not read whole"),
        };
        assert_eq!(answer.bytes.len(), LARGE_ANSWER);
        assert_eq!(large.places(), 0, "the answer holds the place");
        drop(answer);
        assert_eq!(large.places(), 1);
    }

    #[tokio::test]
    async fn a_large_answer_takes_a_free_place_and_holds_it_until_dropped() {
        let large = LargeAnswers::new(1 << 30);
        let read = read_capped(response(2 << 20), 32 << 20, Some(&large), None);
        let Capped::Whole(answer) = read.await.expect("read") else {
            panic!("not read whole");
        };
        assert_eq!(large.places(), 0);
        drop(answer);
        assert_eq!(large.places(), 1);
    }

    #[tokio::test]
    async fn an_answer_past_its_cap_is_cut_and_keeps_no_place() {
        let large = LargeAnswers::new(1 << 30);
        let read = read_capped(response(3 << 20), 2 << 20, Some(&large), None);
        match read.await.expect("read") {
            Capped::Cut(bytes) => assert_eq!(bytes.len(), 2 << 20),
            Capped::Whole(_) | Capped::Crowded => panic!("not cut"),
        }
        assert_eq!(large.places(), 1);
    }

    /// Eight large answers at once over one HTTP/2 connection, two places, each read as
    /// the client reads it: given up when crowded, asked for again holding a place. When a
    /// read waited for its place with its stream open, the unread answers of the waiting
    /// six filled the connection's flow-control window (hyper's 5 MB), the two holding
    /// places received nothing more, and every read timed out (found by review: 1 or 2 of
    /// 8 answered in 10 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_answers_over_one_http2_connection_never_starve_each_other() {
        use std::time::Duration;
        let answer = axum::body::Bytes::from(vec![b' '; 3 << 20]);
        let app = axum::Router::new().fallback(move |version: axum::http::Version| {
            let answer = answer.clone();
            async move {
                assert_eq!(version, axum::http::Version::HTTP_2);
                answer
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        // Plain HTTP is HTTP/1.1 unless the client knows the server speaks HTTP/2; against
        // the real API, TLS chooses it.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .http2_prior_knowledge()
            .build()
            .expect("client");
        let large = LargeAnswers::new(32 << 20);
        let reads = (0..8).map(|_| {
            let (http, large, url) = (http.clone(), large.clone(), url.clone());
            tokio::spawn(async move {
                let mut place = None;
                loop {
                    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
                    match read_capped(response, 32 << 20, Some(&large), place.take()).await {
                        Ok(Capped::Whole(answer)) => {
                            // Held a while, as a parse holds it.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            return Ok::<usize, String>(answer.bytes.len());
                        }
                        Ok(Capped::Crowded) => place = large.take().await,
                        Ok(Capped::Cut(_)) => return Err("cut".to_owned()),
                        Err(e) => return Err(format!("{e:?}")),
                    }
                }
            })
        });
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.expect("task"), Ok(3 << 20));
        }
    }

    #[tokio::test]
    async fn a_place_is_given_back_when_its_answer_is_dropped() {
        let large = LargeAnswers::new(64 << 20);
        let place = large.take().await.expect("a place");
        assert_eq!(large.places(), 0);
        let waiting = tokio::spawn({
            let large = large.clone();
            async move { large.take().await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a second answer waits");
        drop(Answer {
            bytes: Vec::new(),
            _place: Some(place),
        });
        assert!(waiting.await.expect("task"), "and gets the place");
        assert_eq!(large.places(), 1);
    }
}
