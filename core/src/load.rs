//! How busy this process is: the number of requests being served right now.
//!
//! The HTTPS edge counts every request from the moment hyper hands it over until its
//! response is built (or the request is dropped); the store reads the count to decide how
//! long a durable commit may wait for company. It is a hint, not an account: a relaxed
//! atomic, shared by every listener of the process.

use std::sync::atomic::{AtomicUsize, Ordering};

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Requests being served right now, by every listener of this process.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Counts one request as in flight until dropped.
#[derive(Debug)]
#[must_use = "the request counts only while the guard lives"]
pub struct Request(());

impl Request {
    pub fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_while_its_guard_lives() {
        // Other tests of this crate do not start requests, so the count is ours.
        let before = in_flight();
        let a = Request::start();
        let b = Request::start();
        assert_eq!(in_flight(), before + 2);
        drop(a);
        assert_eq!(in_flight(), before + 1);
        drop(b);
        assert_eq!(in_flight(), before);
    }
}
