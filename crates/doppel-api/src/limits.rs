//! Limits per token and for the whole server: the rate limit (requests per minute, governor's
//! GCRA), the daily budget of generated tokens, and how many answers stream at once.
//!
//! Budgets are counted here while the server runs (from the day's record at first use) and
//! written to the database every few seconds and at shutdown, through the core.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Condvar, Mutex};

use doppel_core::access::{ApiToken, TokenUse, day_and_seconds_left};
use doppel_core::{Doppel, Error};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One rate limiter per token, made again when its limit changes.
#[derive(Default)]
pub(crate) struct Rates {
    limiters: Mutex<HashMap<i64, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Rates {
    /// Counts a request of `token`; refused with the wait when over its rate.
    pub(crate) fn check(&self, token: &ApiToken) -> Result<(), Error> {
        let per_minute = token.rate_per_minute.max(1);
        let limiter = {
            let mut limiters = lock(&self.limiters);
            let entry = limiters.entry(token.id).or_insert_with(|| (0, limiter(per_minute)));
            if entry.0 != per_minute {
                *entry = (per_minute, limiter(per_minute));
            }
            Arc::clone(&entry.1)
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::RateLimited {
                per_minute,
                retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }
}

fn limiter(per_minute: u32) -> Arc<DefaultDirectRateLimiter> {
    let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_minute(n)))
}

/// What each token used today, and what is not yet written down.
#[derive(Default)]
pub(crate) struct Ledger {
    days: Mutex<HashMap<i64, Day>>,
}

#[derive(Debug, Clone, Copy)]
struct Day {
    day: i64,
    /// Generated today, written down or not (once `loaded`).
    generated: u64,
    /// Whether what was recorded before (another run today) was read and counted.
    loaded: bool,
    /// Not yet written down.
    pending_requests: u64,
    pending_generated: u64,
    last_used_at: i64,
}

impl Day {
    fn new(day: i64, now: i64) -> Day {
        Day {
            day,
            generated: 0,
            loaded: false,
            pending_requests: 0,
            pending_generated: 0,
            last_used_at: now,
        }
    }
}

impl Ledger {
    /// What `token` may still generate today; refused when its budget is used up.
    pub(crate) fn remaining(
        &self,
        doppel: &Doppel,
        token: &ApiToken,
        now: i64,
    ) -> Result<u64, Error> {
        let (day, left_s) = day_and_seconds_left(now);
        let loaded = lock(&self.days).get(&token.id).is_some_and(|d| d.day == day && d.loaded);
        if !loaded {
            // Read before anything is generated today by this run, so nothing counts twice.
            let stored = doppel.api_tokens_generated(token.id, day)?;
            let mut days = lock(&self.days);
            let entry = days.entry(token.id).or_insert_with(|| Day::new(day, now));
            if entry.day != day {
                *entry = Day { day, generated: 0, loaded: false, ..*entry };
            }
            if !entry.loaded {
                entry.generated += stored;
                entry.loaded = true;
            }
        }
        let generated = lock(&self.days).get(&token.id).map_or(0, |d| d.generated);
        if generated >= token.daily_tokens {
            return Err(Error::BudgetExhausted {
                budget: token.daily_tokens,
                retry_after_s: left_s,
            });
        }
        Ok(token.daily_tokens - generated)
    }

    /// Records a request of `token` (its last use).
    pub(crate) fn touch(&self, token: i64, now: i64) {
        self.record(token, now, |d| d.pending_requests += 1);
    }

    /// Records tokens that `token`'s answer generated.
    pub(crate) fn add_generated(&self, token: i64, generated: u64, now: i64) {
        self.record(token, now, |d| {
            d.generated += generated;
            d.pending_generated += generated;
        });
    }

    fn record(&self, token: i64, now: i64, change: impl FnOnce(&mut Day)) {
        let (day, _) = day_and_seconds_left(now);
        let mut days = lock(&self.days);
        let entry = days.entry(token).or_insert_with(|| Day::new(day, now));
        if entry.day != day {
            // A new day: what the old one left unwritten is recorded on this one.
            *entry = Day { day, generated: 0, loaded: false, ..*entry };
        }
        change(entry);
        entry.last_used_at = entry.last_used_at.max(now);
    }

    /// Takes what is not yet written down.
    pub(crate) fn take_pending(&self) -> Vec<TokenUse> {
        let mut days = lock(&self.days);
        let mut uses = Vec::new();
        for (token, d) in days.iter_mut() {
            if d.pending_requests == 0 && d.pending_generated == 0 {
                continue;
            }
            uses.push(TokenUse {
                token: *token,
                day: d.day,
                requests: d.pending_requests,
                generated: d.pending_generated,
                last_used_at: d.last_used_at,
            });
            d.pending_requests = 0;
            d.pending_generated = 0;
        }
        uses
    }

    /// Writes down what is pending (every few seconds, and at shutdown).
    pub(crate) fn flush(&self, doppel: &Doppel) {
        let uses = self.take_pending();
        if uses.is_empty() {
            return;
        }
        if let Err(e) = doppel.record_api_use(uses) {
            tracing::warn!(code = e.code(), "the API's use could not be recorded");
        }
    }
}

/// Answers streaming and connections open, counted so that a caller can wait for both to end.
#[derive(Default)]
pub struct Gauges {
    counts: Mutex<(usize, usize)>,
    changed: Condvar,
}

impl Gauges {
    pub(crate) fn streams(&self, delta: isize) {
        self.change(|c| c.0 = c.0.saturating_add_signed(delta));
    }

    pub(crate) fn connections(&self, delta: isize) {
        self.change(|c| c.1 = c.1.saturating_add_signed(delta));
    }

    fn change(&self, f: impl FnOnce(&mut (usize, usize))) {
        f(&mut lock(&self.counts));
        self.changed.notify_all();
    }

    /// `(answers streaming, connections open)` now.
    pub fn now(&self) -> (usize, usize) {
        *lock(&self.counts)
    }

    /// Waits until no answer streams and no connection is open, at most `limit`; returns the
    /// counts then.
    pub fn wait_idle(&self, limit: std::time::Duration) -> (usize, usize) {
        let guard = lock(&self.counts);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, limit, |c| *c != (0, 0))
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// How many answers stream, in all and per token.
pub(crate) struct Streams {
    per_token: Mutex<HashMap<i64, usize>>,
    total: Mutex<usize>,
    max_total: usize,
    max_per_token: usize,
    gauges: Arc<Gauges>,
}

/// A place among the streaming answers, given back when dropped.
pub(crate) struct StreamSlot {
    streams: Arc<Streams>,
    token: i64,
}

impl Streams {
    pub(crate) fn new(max_total: usize, max_per_token: usize, gauges: Arc<Gauges>) -> Streams {
        Streams {
            per_token: Mutex::default(),
            total: Mutex::new(0),
            max_total,
            max_per_token,
            gauges,
        }
    }

    pub(crate) fn acquire(self: &Arc<Self>, token: i64) -> Result<StreamSlot, Error> {
        let mut total = lock(&self.total);
        let mut per_token = lock(&self.per_token);
        let mine = per_token.entry(token).or_insert(0);
        if *total >= self.max_total {
            return Err(Error::Busy(format!(
                "the API streams {} answers at once, its most; try again in a moment",
                self.max_total
            )));
        }
        if *mine >= self.max_per_token {
            return Err(Error::Busy(format!(
                "this token streams {} answers at once, its most; try again in a moment",
                self.max_per_token
            )));
        }
        *mine += 1;
        *total += 1;
        self.gauges.streams(1);
        Ok(StreamSlot { streams: Arc::clone(self), token })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        *lock(&self.streams.total) -= 1;
        if let Some(n) = lock(&self.streams.per_token).get_mut(&self.token) {
            *n = n.saturating_sub(1);
        }
        self.streams.gauges.streams(-1);
    }
}
