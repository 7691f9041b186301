//! Brute-force protection: exponential back-off per account and per source address, and
//! lockout of an account after N consecutive failures.
//!
//! Counting is atomic: an attempt is *admitted* under one lock and holds a reservation
//! until its outcome is known, and an account never has more reservations plus recorded
//! failures than the lockout threshold — so a burst of concurrent attempts gets at most N
//! tries, not N per racing request. Counters live in memory (fast, and losing them on a
//! restart costs an attacker nothing); locks are also written to `idp.redb`, so a restart
//! does not unlock anybody.

use kopa_config::LoginConfig;
use kopa_core::Clock;
use kopa_store::{Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// A persisted lock of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// When the lock ends, ms since the epoch.
    pub until_ms: u64,
    /// Failures that caused it.
    pub failures: u32,
}

const LOCKOUTS: Table<String, LockRecord> = Table::new("lockouts");

/// Creates this module's tables (migration 4 of `idp.redb`).
pub(crate) fn create_tables(txn: &kopa_store::WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&LOCKOUTS)
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    failures: u32,
    in_flight: u32,
    last_failure_ms: u64,
    locked_until_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, Counter>,
    ips: HashMap<IpAddr, Counter>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    store: Store,
    clock: Arc<dyn Clock>,
    config: LoginConfig,
}

/// Why an attempt may not proceed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many recent failures: try again after this many milliseconds.
    Throttled {
        /// Wait before the next attempt.
        retry_after_ms: u64,
    },
    /// The account is locked until this time.
    Locked {
        /// End of the lock, ms since the epoch.
        until_ms: u64,
    },
}

/// What an attempt turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Credentials were right: the account's failures are forgiven.
    Success,
    /// Credentials were wrong (or the user unknown): counts towards back-off and lockout.
    Failure,
    /// Nothing was learnt (directory unavailable, malformed input): counts for nothing.
    Neutral,
}

/// A change of lock state that must be audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockChange {
    /// The account was locked by this failure.
    Locked {
        /// Account key.
        account: String,
        /// End of the lock.
        until_ms: u64,
    },
    /// The lock had expired and was lifted by this attempt.
    Expired {
        /// Account key.
        account: String,
    },
}

/// The brute-force guard of the login form.
#[derive(Debug, Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

/// A reserved attempt; hand it back with [`Throttle::finish`]. Dropped unfinished, it
/// counts as [`Outcome::Neutral`].
#[derive(Debug)]
pub struct Ticket {
    inner: Arc<Inner>,
    account: String,
    ip: IpAddr,
    /// Set when admitting this attempt lifted an expired lock.
    pub expired_lock: bool,
    done: bool,
}

fn backoff_ms(config: &LoginConfig, failures: u32) -> u64 {
    if failures == 0 || config.backoff_base_ms == 0 {
        return 0;
    }
    let shift = (failures - 1).min(30);
    config
        .backoff_base_ms
        .saturating_mul(1u64 << shift)
        .min(config.backoff_max_ms)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another request panicked mid-update; the counters
        // are still integers, so keep serving rather than fail every login.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self, account: &str, ip: IpAddr, outcome: Outcome) -> Option<LockChange> {
        let now = self.clock.now_millis();
        let mut state = self.lock();
        let mut change = None;
        if let Some(c) = state.accounts.get_mut(account) {
            c.in_flight = c.in_flight.saturating_sub(1);
            match outcome {
                Outcome::Success => {
                    c.failures = 0;
                    c.last_failure_ms = 0;
                }
                Outcome::Failure => {
                    c.failures = c.failures.saturating_add(1);
                    c.last_failure_ms = now;
                    if c.failures >= self.config.lockout_threshold && c.locked_until_ms <= now {
                        c.locked_until_ms = now + self.config.lockout_secs * 1000;
                        change = Some(LockChange::Locked {
                            account: account.to_owned(),
                            until_ms: c.locked_until_ms,
                        });
                    }
                }
                Outcome::Neutral => {}
            }
        }
        if outcome == Outcome::Failure {
            let c = state.ips.entry(ip).or_default();
            c.failures = c.failures.saturating_add(1);
            c.last_failure_ms = now;
        }
        change
    }
}

impl Throttle {
    /// A throttle whose persisted locks are read from `store` (the IdP database).
    pub async fn load(
        store: Store,
        clock: Arc<dyn Clock>,
        config: LoginConfig,
    ) -> Result<Self, StoreError> {
        let locks = store.read(|txn| txn.iter(&LOCKOUTS)).await?;
        let now = clock.now_millis();
        let mut state = State::default();
        for (account, lock) in locks {
            state.accounts.insert(
                account,
                Counter {
                    failures: lock.failures,
                    in_flight: 0,
                    last_failure_ms: now,
                    locked_until_ms: lock.until_ms,
                },
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                store,
                clock,
                config,
            }),
        })
    }

    /// Admits an attempt for `account` from `ip`, or says why not.
    pub fn admit(&self, account: &str, ip: IpAddr) -> Result<Ticket, Refusal> {
        let cfg = &self.inner.config;
        let now = self.inner.clock.now_millis();
        let mut state = self.inner.lock();
        if state.accounts.len() + state.ips.len() > 200_000 {
            prune(&mut state, now, cfg);
        }

        if let Some(c) = state.ips.get_mut(&ip) {
            // An address's failures are forgotten after a quiet lockout period.
            if now.saturating_sub(c.last_failure_ms) > cfg.lockout_secs * 1000 {
                c.failures = 0;
            }
            if c.failures >= cfg.ip_free_failures {
                let wait = backoff_ms(cfg, c.failures - cfg.ip_free_failures + 1);
                let ready = c.last_failure_ms + wait;
                if now < ready {
                    return Err(Refusal::Throttled {
                        retry_after_ms: ready - now,
                    });
                }
            }
        }

        let c = state.accounts.entry(account.to_owned()).or_default();
        let mut expired_lock = false;
        if c.locked_until_ms > now {
            return Err(Refusal::Locked {
                until_ms: c.locked_until_ms,
            });
        }
        if c.locked_until_ms != 0 {
            c.locked_until_ms = 0;
            c.failures = 0;
            expired_lock = true;
        }
        if c.failures + c.in_flight >= cfg.lockout_threshold {
            // Earlier attempts are still deciding whether this account locks.
            return Err(Refusal::Throttled {
                retry_after_ms: 1000,
            });
        }
        let ready = c.last_failure_ms + backoff_ms(cfg, c.failures);
        if c.failures > 0 && now < ready {
            return Err(Refusal::Throttled {
                retry_after_ms: ready - now,
            });
        }
        c.in_flight += 1;
        drop(state);
        Ok(Ticket {
            inner: self.inner.clone(),
            account: account.to_owned(),
            ip,
            expired_lock,
            done: false,
        })
    }

    /// Records the outcome of an admitted attempt; a new lock is written to the database
    /// before this returns, and an expired one removed.
    pub async fn finish(
        &self,
        mut ticket: Ticket,
        outcome: Outcome,
    ) -> Result<Option<LockChange>, StoreError> {
        ticket.done = true;
        let change = self.inner.release(&ticket.account, ticket.ip, outcome);
        let account = ticket.account.clone();
        match &change {
            Some(LockChange::Locked { until_ms, .. }) => {
                let record = LockRecord {
                    until_ms: *until_ms,
                    failures: self.inner.config.lockout_threshold,
                };
                self.inner
                    .store
                    .write(move |txn| txn.insert(&LOCKOUTS, &account, &record).map(|_| ()))
                    .await?;
                Ok(change)
            }
            _ if ticket.expired_lock => {
                self.inner
                    .store
                    .write(move |txn| txn.remove(&LOCKOUTS, &account).map(|_| ()))
                    .await?;
                Ok(Some(LockChange::Expired {
                    account: ticket.account.clone(),
                }))
            }
            _ => Ok(change),
        }
    }

    /// Lifts the lock of `account` (an administrator's decision). Returns whether it was
    /// locked.
    pub async fn unlock(&self, account: &str) -> Result<bool, StoreError> {
        let now = self.inner.clock.now_millis();
        let was_locked = {
            let mut state = self.inner.lock();
            match state.accounts.get_mut(account) {
                Some(c) => {
                    let locked = c.locked_until_ms > now;
                    *c = Counter {
                        in_flight: c.in_flight,
                        ..Counter::default()
                    };
                    locked
                }
                None => false,
            }
        };
        let key = account.to_owned();
        self.inner
            .store
            .write(move |txn| txn.remove(&LOCKOUTS, &key).map(|_| ()))
            .await?;
        Ok(was_locked)
    }

    /// Accounts locked now, with the end of each lock.
    pub fn locked(&self) -> Vec<(String, u64)> {
        let now = self.inner.clock.now_millis();
        let state = self.inner.lock();
        let mut out: Vec<_> = state
            .accounts
            .iter()
            .filter(|(_, c)| c.locked_until_ms > now)
            .map(|(k, c)| (k.clone(), c.locked_until_ms))
            .collect();
        out.sort();
        out
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.inner.release(&self.account, self.ip, Outcome::Neutral);
        }
    }
}

/// Forgets counters with nothing in flight, no lock and no failure within the longest
/// window that could still matter.
fn prune(state: &mut State, now: u64, cfg: &LoginConfig) {
    let horizon = (cfg.lockout_secs * 1000).max(cfg.backoff_max_ms);
    let keep = |c: &Counter| {
        c.in_flight > 0
            || c.locked_until_ms > now
            || now.saturating_sub(c.last_failure_ms) < horizon
    };
    state.accounts.retain(|_, c| keep(c));
    state.ips.retain(|_, c| keep(c));
}

#[cfg(test)]
mod tests {
    use super::*;
    use kopa_core::FixedClock;

    async fn throttle(
        dir: &std::path::Path,
        clock: Arc<FixedClock>,
        config: LoginConfig,
    ) -> Throttle {
        let store = Store::open(dir, &crate::SCHEMA).unwrap();
        Throttle::load(store, clock, config).await.unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[tokio::test]
    async fn backoff_doubles_and_success_forgives() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(1_000_000));
        let cfg = LoginConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            ..LoginConfig::default()
        };
        let t = throttle(dir.path(), clock.clone(), cfg).await;
        let ticket = t.admit("anna", ip(1)).unwrap();
        t.finish(ticket, Outcome::Failure).await.unwrap();
        assert_eq!(
            t.admit("anna", ip(1)).unwrap_err(),
            Refusal::Throttled {
                retry_after_ms: 100
            }
        );
        clock.advance(100);
        let ticket = t.admit("anna", ip(1)).unwrap();
        t.finish(ticket, Outcome::Failure).await.unwrap();
        assert_eq!(
            t.admit("anna", ip(1)).unwrap_err(),
            Refusal::Throttled {
                retry_after_ms: 200
            }
        );
        clock.advance(200);
        let ticket = t.admit("anna", ip(1)).unwrap();
        t.finish(ticket, Outcome::Success).await.unwrap();
        let ticket = t.admit("anna", ip(1)).unwrap();
        drop(ticket);
        assert!(
            t.admit("anna", ip(1)).is_ok(),
            "neutral drop must not count"
        );
    }

    #[tokio::test]
    async fn concurrent_burst_gets_at_most_threshold_tries_and_lock_persists() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(5_000_000));
        let cfg = LoginConfig {
            backoff_base_ms: 0,
            ..LoginConfig::default()
        };
        let t = throttle(dir.path(), clock.clone(), cfg.clone()).await;
        // 50 attempts arrive before any finishes.
        let admitted: Vec<_> = (0..50)
            .filter_map(|i| t.admit("janis", ip(i)).ok())
            .collect();
        assert_eq!(admitted.len(), 5);
        let mut changes = Vec::new();
        for ticket in admitted {
            changes.push(t.finish(ticket, Outcome::Failure).await.unwrap());
        }
        let locks: Vec<_> = changes.into_iter().flatten().collect();
        assert_eq!(locks.len(), 1, "{locks:?}");
        let until = 5_000_000 + 900_000;
        assert_eq!(
            t.admit("janis", ip(9)).unwrap_err(),
            Refusal::Locked { until_ms: until }
        );

        // The lock survives a restart.
        drop(t);
        let t = throttle(dir.path(), clock.clone(), cfg).await;
        assert_eq!(
            t.admit("janis", ip(9)).unwrap_err(),
            Refusal::Locked { until_ms: until }
        );
        assert_eq!(t.locked(), vec![("janis".to_owned(), until)]);

        // It expires by itself, and the lifting is reported once.
        clock.advance(900_001);
        let ticket = t.admit("janis", ip(9)).unwrap();
        assert!(ticket.expired_lock);
        let change = t.finish(ticket, Outcome::Success).await.unwrap();
        assert_eq!(
            change,
            Some(LockChange::Expired {
                account: "janis".into()
            })
        );
        assert!(t.locked().is_empty());
    }

    #[tokio::test]
    async fn admin_unlock_and_ip_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(9_000_000));
        let cfg = LoginConfig {
            backoff_base_ms: 0,
            lockout_threshold: 2,
            ip_free_failures: 3,
            ..LoginConfig::default()
        };
        let t = throttle(dir.path(), clock.clone(), cfg).await;
        for _ in 0..2 {
            let ticket = t.admit("liga", ip(7)).unwrap();
            t.finish(ticket, Outcome::Failure).await.unwrap();
        }
        assert!(matches!(
            t.admit("liga", ip(7)),
            Err(Refusal::Locked { .. })
        ));
        assert!(t.unlock("liga").await.unwrap());
        assert!(!t.unlock("liga").await.unwrap());
        let ticket = t.admit("liga", ip(8)).unwrap();
        t.finish(ticket, Outcome::Success).await.unwrap();

        // The same address failing on many accounts is slowed down after its free failures.
        let cfg_backoff = LoginConfig {
            backoff_base_ms: 500,
            ..LoginConfig::default()
        };
        let dir2 = tempfile::tempdir().unwrap();
        let t = throttle(
            dir2.path(),
            clock.clone(),
            LoginConfig {
                ip_free_failures: 3,
                ..cfg_backoff
            },
        )
        .await;
        for user in ["a", "b", "c"] {
            let ticket = t.admit(user, ip(1)).unwrap();
            t.finish(ticket, Outcome::Failure).await.unwrap();
        }
        assert_eq!(
            t.admit("d", ip(1)).unwrap_err(),
            Refusal::Throttled {
                retry_after_ms: 500
            }
        );
        assert!(
            t.admit("d", ip(2)).is_ok(),
            "other addresses are not affected"
        );
    }
}
