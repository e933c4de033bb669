//! Waiting for jobs with progress: a bar for the batch and one for the file being indexed when
//! stderr is a terminal, a line per finished file otherwise; both say about how long the rest
//! will take (the core's estimate from the pace of the latest files).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use doppel_core::{Doppel, Error, Event, Job, JobId, JobOutcome, Millis, VectorStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::Printer;

pub(crate) fn jobs(doppel: &Doppel, ids: &[JobId], out: &Printer) -> Result<Vec<Job>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let origins: HashMap<JobId, String> =
        ids.iter().filter_map(|&id| doppel.job(id).ok().map(|j| (id, j.origin))).collect();
    let name = |job: JobId| origins.get(&job).cloned().unwrap_or_else(|| format!("job {job}"));
    let bars = out.interactive().then(|| {
        let multi = MultiProgress::new();
        let batch = multi.add(ProgressBar::new(ids.len() as u64));
        batch.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} files, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        batch.set_message("estimating the time left");
        let file = multi.add(ProgressBar::new(0));
        file.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} passages {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        (multi, batch, file)
    });
    let mut pace = Pace::new(ids.len());
    // One file ended: the batch moves on, and says about how long the rest will take.
    let mut ended = |bars: &Option<(MultiProgress, ProgressBar, ProgressBar)>| -> String {
        let line = pace.ended();
        if let Some((_, batch, _)) = bars {
            batch.inc(1);
            batch.set_message(pace.time_left());
        }
        line
    };
    let say = |line: String| match &bars {
        Some((multi, _, _)) => drop(multi.println(line)),
        None => out.note(&line),
    };
    let jobs = doppel.wait_for(ids, |event| match event {
        Event::JobStarted { job, attempt, .. } => {
            if let Some((_, _, file)) = &bars {
                file.reset();
                file.set_length(0);
                let retry =
                    if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                file.set_message(format!("{}{retry}", name(*job)));
            }
        }
        Event::JobProgress { done, total, .. } => {
            if let Some((_, _, file)) = &bars {
                file.set_length(*total);
                file.set_position(*done);
            }
        }
        Event::JobDone { job, outcome, chunks, source } => {
            let what = match outcome {
                JobOutcome::Ingested => format!("indexed ({chunks} passages)"),
                JobOutcome::Unchanged => "unchanged".to_string(),
                JobOutcome::AlreadyPresent => {
                    format!(
                        "already present (source {})",
                        source.map_or("?".into(), |s| s.to_string())
                    )
                }
            };
            let progress = ended(&bars);
            say(format!("{}: {what} · {progress}", name(*job)));
        }
        Event::JobFailed { job, message, retry_at, .. } => match retry_at {
            Some(_) => say(format!("{}: {message} (will retry)", name(*job))),
            None => {
                let progress = ended(&bars);
                say(format!("{}: failed: {message} · {progress}", name(*job)));
            }
        },
        Event::JobCancelled { job } => {
            let progress = ended(&bars);
            say(format!("{}: cancelled · {progress}", name(*job)));
        }
        _ => {}
    });
    if let Some((multi, batch, file)) = bars {
        file.finish_and_clear();
        batch.finish_and_clear();
        let _ = multi.clear();
    }
    jobs
}

/// How many files of a batch ended, and when the latest of them did.
struct Pace {
    total: usize,
    count: usize,
    recent: std::collections::VecDeque<Millis>,
}

impl Pace {
    fn new(total: usize) -> Pace {
        Pace { total, count: 0, recent: Default::default() }
    }

    /// Counts one more file as ended; returns "3 of 12 files, about 20 s left".
    fn ended(&mut self) -> String {
        self.count += 1;
        let now =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis);
        self.recent.push_back(now);
        if self.recent.len() > doppel_core::queue::RECENT as usize {
            self.recent.pop_front();
        }
        format!("{} of {} files, {}", self.count, self.total, self.time_left())
    }

    fn time_left(&self) -> String {
        if self.count >= self.total {
            return "all done".into();
        }
        let remaining = (self.total - self.count) as u64;
        let recent: Vec<Millis> = self.recent.iter().copied().collect();
        doppel_core::queue::time_left(remaining, &recent)
            .map(crate::status::time_left_text)
            .unwrap_or_else(|| "estimating the time left".into())
    }
}

/// Waits until every passage has a vector from the current model, with a bar on a terminal.
pub(crate) fn vectors(doppel: &Doppel, out: &Printer) -> Result<VectorStatus, Error> {
    let bar = out.interactive().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} passages re-embedded")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut total = None;
    let status = doppel.wait_for_vectors(|event| {
        if let (Event::Backfill { embedded, remaining }, Some(bar)) = (event, &bar) {
            let total = *total.get_or_insert(embedded + remaining);
            bar.set_length(total);
            bar.set_position(total.saturating_sub(*remaining));
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    status
}

/// Waits until the vector index is no longer being rebuilt in the background (a short-lived
/// command would otherwise leave before the rebuild could be saved, and search by keywords
/// alone), with a bar on a terminal.
pub(crate) fn index(doppel: &Doppel, out: &Printer) -> Result<VectorStatus, Error> {
    let bar = out.interactive().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} vectors back in the index")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let status = doppel.wait_for_index(|event| {
        if let (Event::IndexRebuild { done, total }, Some(bar)) = (event, &bar) {
            bar.set_length(*total);
            bar.set_position(*done);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    status
}
