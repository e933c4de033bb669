//! Local metrics: what the core measures as it works, kept in the database for `metrics_days`.
//!
//! A measurement is a [`Metric`], a label from a fixed vocabulary (a format, a job kind, an
//! error code, an answer's kind) and a number. Nothing here ever holds document text, a title,
//! a path or a URL: labels come from the code, never from a document or a person.
//!
//! Any thread records ([`Metrics::record`]); the samples wait in memory (bounded, the oldest
//! dropped first and counted) and the worker writes them in one transaction when it is idle, at
//! most once a second while it works, and when it stops ([`Metrics::flush`], which also drops
//! rows older than the setting and beyond [`MAX_ROWS`]). `Doppel::stats` asks for a flush
//! first, so it sees everything recorded until then. Observers ([`Metrics::observe`]) receive
//! each measurement as it is taken: the tests compare what they saw with what `stats` says.
//!
//! Percentiles are nearest-rank over the kept samples, so they are exact.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::model::Millis;
use crate::store::now_ms;
use crate::sync::lock;

/// Most rows kept, whatever `metrics_days` allows (about 20 MB).
const MAX_ROWS: i64 = 250_000;

/// Most measurements waiting in memory for the worker to write them.
const MAX_PENDING: usize = 50_000;

const DAY_MS: Millis = 24 * 3_600_000;
const HOUR_MS: Millis = 3_600_000;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Metric {
    /// Milliseconds a job took, from its start to its end; labelled by format.
    JobTime,
    /// Passages a finished job stored; labelled by format.
    JobPassages,
    /// The process's peak resident memory during a job, in MiB; labelled by job kind.
    JobPeakMemory,
    /// A job's failed attempt (1 each); labelled by error code.
    JobFailed,
    /// A cancelled job (1 each).
    JobCancelled,
    /// Queued jobs, sampled at most once a second while the worker writes measurements.
    QueueDepth,
    /// Milliseconds one batch of passages took to embed; labelled `local` or `server`.
    EmbedTime,
    /// Passages in that batch; labelled as its time.
    EmbedPassages,
    /// Milliseconds a search took; labelled by mode.
    SearchTime,
    /// Milliseconds an answer took, from the question to its end; labelled `model` or
    /// `passages` (no model wrote it).
    AnswerTime,
    /// Milliseconds to an answer's first piece; labelled as its time.
    FirstPiece,
    /// A cancelled answer (1 each).
    AnswerCancelled,
    /// A model's answer that was replaced because its passages did not support it (1 each).
    AnswerUnsupported,
    /// Milliseconds a read waited for a pooled connection (only reads that waited).
    ReadWait,
    /// Milliseconds a request waited for the worker's reply.
    CommandWait,
}

impl Metric {
    /// Every metric, in the order reports list them.
    pub const ALL: [Metric; 15] = [
        Metric::JobTime,
        Metric::JobPassages,
        Metric::JobPeakMemory,
        Metric::JobFailed,
        Metric::JobCancelled,
        Metric::QueueDepth,
        Metric::EmbedTime,
        Metric::EmbedPassages,
        Metric::SearchTime,
        Metric::AnswerTime,
        Metric::FirstPiece,
        Metric::AnswerCancelled,
        Metric::AnswerUnsupported,
        Metric::ReadWait,
        Metric::CommandWait,
    ];

    /// Its stable name, in storage and in `doppel stats --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::JobTime => "job_ms",
            Metric::JobPassages => "job_passages",
            Metric::JobPeakMemory => "job_peak_mib",
            Metric::JobFailed => "job_failed",
            Metric::JobCancelled => "job_cancelled",
            Metric::QueueDepth => "queue_depth",
            Metric::EmbedTime => "embed_ms",
            Metric::EmbedPassages => "embed_passages",
            Metric::SearchTime => "search_ms",
            Metric::AnswerTime => "answer_ms",
            Metric::FirstPiece => "first_piece_ms",
            Metric::AnswerCancelled => "answer_cancelled",
            Metric::AnswerUnsupported => "answer_unsupported",
            Metric::ReadWait => "read_wait_ms",
            Metric::CommandWait => "command_wait_ms",
        }
    }

    /// The metric a stored name stands for (`None` for one a newer Doppel wrote).
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether each sample counts one event (its value is 1), rather than measuring one.
    pub fn is_count(self) -> bool {
        matches!(
            self,
            Metric::JobFailed
                | Metric::JobCancelled
                | Metric::AnswerCancelled
                | Metric::AnswerUnsupported
        )
    }
}

/// One measurement, as observers receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// What was measured.
    pub metric: Metric,
    /// Its label (see [`Metric`]); empty when it has none.
    pub label: String,
    /// The number.
    pub value: f64,
}

/// Measurements of one metric and label over the period asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// What was measured.
    pub metric: Metric,
    /// Its label.
    pub label: String,
    /// How many measurements.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Nearest-rank percentiles and the largest.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

/// One hour of work, for charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hour {
    /// Its start, in milliseconds since the epoch.
    pub start_ms: Millis,
    /// Jobs that ended in it (done, failed for good or cancelled are all counted by their time).
    pub jobs: u64,
    /// Their mean time in milliseconds.
    pub mean_job_ms: f64,
    /// Failed attempts in it.
    pub failures: u64,
}

/// What `doppel stats` shows: the metrics of a period and the twin's health now.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// The period, in days back from now.
    pub days: u32,
    /// Days kept (the `metrics_days` setting; 0 when metrics are off).
    pub keep_days: u32,
    /// Each metric and label measured in the period.
    pub summaries: Vec<Summary>,
    /// Jobs and failures per hour of the period.
    pub hours: Vec<Hour>,
    /// The twin's health now.
    pub health: Health,
}

impl Stats {
    /// The summary of `metric` with `label`, if it was measured.
    pub fn summary(&self, metric: Metric, label: &str) -> Option<&Summary> {
        self.summaries.iter().find(|s| s.metric == metric && s.label == label)
    }

    /// Every label's summary of `metric`.
    pub fn of(&self, metric: Metric) -> impl Iterator<Item = &Summary> {
        self.summaries.iter().filter(move |s| s.metric == metric)
    }

    /// How many `metric` counted over all labels (its samples' sum).
    pub fn total(&self, metric: Metric) -> f64 {
        self.of(metric).map(|s| s.sum).sum()
    }

    /// Passages per second: those of `passages` over the time of `time`, for one label.
    pub fn per_second(&self, passages: Metric, time: Metric, label: &str) -> Option<f64> {
        let count = self.summary(passages, label)?.sum;
        let ms = self.summary(time, label)?.sum;
        (ms > 0.0).then(|| count * 1000.0 / ms)
    }
}

/// The twin's health as `doppel stats` finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Passages stored.
    pub passages: u64,
    /// Entries in the vector index.
    pub index_entries: u64,
    /// The index in memory, in bytes.
    pub index_memory_bytes: u64,
    /// The saved index files, in bytes.
    pub index_file_bytes: u64,
    /// The database with its write-ahead log, in bytes.
    pub database_bytes: u64,
    /// Whether the index agrees with the stored vectors both ways (why not, if not).
    pub agreement: std::result::Result<(), String>,
    /// Stored vectors that repeat another text's vector byte for byte.
    pub duplicate_vectors: u64,
    /// Jobs waiting in the queue.
    pub queued_jobs: u64,
    /// The process's resident memory now and at its peak since the last job began, in MiB.
    pub memory_mib: Option<(f64, f64)>,
}

/// The process's resident memory now and at its peak, in MiB (Linux).
pub(crate) fn memory_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The nearest-rank `q`-th percentile (0 < q ≤ 100) of sorted values; 0 for none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Where measurements gather until the worker writes them.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Days kept (the `metrics_days` setting); 0 records nothing.
    keep_days: AtomicU32,
    pending: Mutex<Pending>,
    observers: Mutex<Vec<Sender<Measurement>>>,
}

#[derive(Default)]
struct Pending {
    samples: Vec<(Millis, Measurement)>,
    /// Dropped because too many waited (the worker was held up for long).
    dropped: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Applies the `metrics_days` setting.
    pub(crate) fn keep_days(&self, days: u32) {
        self.keep_days.store(days, Ordering::Relaxed);
    }

    /// Days kept; 0 when metrics are off.
    pub(crate) fn kept_days(&self) -> u32 {
        self.keep_days.load(Ordering::Relaxed)
    }

    /// Records one measurement (nothing when metrics are off).
    pub(crate) fn record(&self, metric: Metric, label: &str, value: f64) {
        if self.keep_days.load(Ordering::Relaxed) == 0 {
            return;
        }
        let measurement = Measurement { metric, label: label.to_string(), value };
        lock(&self.observers).retain(|tx| tx.send(measurement.clone()).is_ok());
        let mut pending = lock(&self.pending);
        if pending.samples.len() >= MAX_PENDING {
            let drop = MAX_PENDING / 10;
            pending.samples.drain(..drop);
            pending.dropped += drop as u64;
        }
        pending.samples.push((now_ms(), measurement));
    }

    /// Records the milliseconds since `started`.
    pub(crate) fn record_since(&self, metric: Metric, label: &str, started: std::time::Instant) {
        self.record(metric, label, started.elapsed().as_secs_f64() * 1000.0);
    }

    /// Every later measurement, as it is taken.
    pub(crate) fn observe(&self) -> Receiver<Measurement> {
        let (tx, rx) = channel();
        lock(&self.observers).push(tx);
        rx
    }

    /// Whether measurements wait to be written.
    pub(crate) fn has_pending(&self) -> bool {
        !lock(&self.pending).samples.is_empty()
    }

    /// Writes the waiting measurements and drops rows older than the setting or beyond
    /// [`MAX_ROWS`]; `conn` should be in a transaction. Returns how many were written.
    pub(crate) fn flush(&self, conn: &Connection) -> Result<usize> {
        let (samples, dropped) = {
            let mut pending = lock(&self.pending);
            (std::mem::take(&mut pending.samples), std::mem::take(&mut pending.dropped))
        };
        if dropped > 0 {
            tracing::warn!(dropped, "metrics were dropped while the worker was busy");
        }
        let mut insert = conn.prepare_cached(
            "INSERT INTO metric_samples (at_ms, metric, label, value) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (at, m) in &samples {
            insert.execute(params![at, m.metric.as_str(), m.label, m.value])?;
        }
        let days = i64::from(self.keep_days.load(Ordering::Relaxed).max(1));
        conn.execute("DELETE FROM metric_samples WHERE at_ms < ?1", [now_ms() - days * DAY_MS])?;
        conn.execute(
            "DELETE FROM metric_samples WHERE id <= (SELECT MAX(id) FROM metric_samples) - ?1",
            [MAX_ROWS],
        )?;
        Ok(samples.len())
    }
}

/// Summaries of every metric and label measured since `since`.
pub(crate) fn summaries(conn: &Connection, since: Millis) -> Result<Vec<Summary>> {
    let mut query = conn.prepare(
        "SELECT metric, label, value FROM metric_samples WHERE at_ms >= ?1
         ORDER BY metric, label, value",
    )?;
    let mut rows = query.query([since])?;
    let mut out: Vec<Summary> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    let mut current: Option<(Metric, String)> = None;
    let mut close = |key: Option<(Metric, String)>, values: &mut Vec<f64>| {
        if let Some((metric, label)) = key
            && !values.is_empty()
        {
            out.push(Summary {
                metric,
                label,
                count: values.len() as u64,
                sum: values.iter().sum(),
                p50: percentile(values, 50.0),
                p95: percentile(values, 95.0),
                p99: percentile(values, 99.0),
                max: values.last().copied().unwrap_or(0.0),
            });
        }
        values.clear();
    };
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let Some(metric) = Metric::parse(&name) else { continue };
        let key = (metric, row.get::<_, String>(1)?);
        if current.as_ref() != Some(&key) {
            close(current.replace(key), &mut values);
        }
        values.push(row.get(2)?);
    }
    close(current, &mut values);
    out.sort_by(|a, b| (a.metric, &a.label).cmp(&(b.metric, &b.label)));
    Ok(out)
}

/// Jobs and failures per hour since `since`, oldest first (hours without either are left out).
pub(crate) fn hours(conn: &Connection, since: Millis) -> Result<Vec<Hour>> {
    let mut query = conn.prepare(
        "SELECT at_ms / ?2 AS hour,
                SUM(metric = 'job_ms'), AVG(CASE WHEN metric = 'job_ms' THEN value END),
                SUM(metric = 'job_failed')
         FROM metric_samples
         WHERE at_ms >= ?1 AND metric IN ('job_ms', 'job_failed')
         GROUP BY hour ORDER BY hour",
    )?;
    let rows = query.query_map(params![since, HOUR_MS], |r| {
        Ok(Hour {
            start_ms: r.get::<_, i64>(0)? * HOUR_MS,
            jobs: r.get::<_, i64>(1)? as u64,
            mean_job_ms: r.get::<_, Option<f64>>(2)?.unwrap_or(0.0),
            failures: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The start of the period of the last `days` days.
pub(crate) fn since(days: u32) -> Millis {
    now_ms() - i64::from(days) * DAY_MS
}

/// The process's peak resident memory since the last [`reset_peak_memory`], in MiB (Linux;
/// `None` elsewhere). One system call, cheap enough for every job.
pub(crate) fn peak_memory_mib() -> Option<f64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory the size of a `rusage`, all the call writes.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it filled `usage`.
    let usage = unsafe { usage.assume_init() };
    // Kibibytes on Linux.
    Some(usage.ru_maxrss as f64 / 1024.0)
}

/// Starts a new peak of resident memory (Linux's `clear_refs`; nothing elsewhere).
pub(crate) fn reset_peak_memory() {
    // Best effort: without it the peak is the process's since its start.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 95.0), 95.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn metric_names_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.as_str()), Some(metric));
        }
        assert_eq!(Metric::parse("from_a_newer_doppel"), None);
    }

    #[test]
    fn nothing_is_recorded_when_metrics_are_off() {
        let metrics = Metrics::default();
        metrics.record(Metric::SearchTime, "hybrid", 3.0);
        assert!(!metrics.has_pending());
        metrics.keep_days(30);
        metrics.record(Metric::SearchTime, "hybrid", 3.0);
        assert!(metrics.has_pending());
    }
}
