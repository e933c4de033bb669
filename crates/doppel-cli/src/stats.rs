//! `doppel stats`: the local metrics, as JSON (a public contract, like `json.rs`) or as text with
//! small charts.

use doppel_core::metrics::{Hour, Metric, Stats, Summary};
use serde_json::{Value, json};

/// Hours the text's charts show.
const CHART_HOURS: usize = 24;

pub(crate) fn json(stats: &Stats) -> Value {
    let summary = |s: &Summary| {
        json!({
            "metric": s.metric.as_str(),
            "label": s.label,
            "count": s.count,
            "sum": s.sum,
            "p50": s.p50,
            "p95": s.p95,
            "p99": s.p99,
            "max": s.max,
        })
    };
    let failures: serde_json::Map<String, Value> =
        stats.of(Metric::JobFailed).map(|s| (s.label.clone(), json!(s.count))).collect();
    let h = &stats.health;
    json!({
        "days": stats.days,
        "keep_days": stats.keep_days,
        "metrics": stats.summaries.iter().map(summary).collect::<Vec<_>>(),
        "failures": failures,
        "hours": stats.hours.iter().map(|h: &Hour| json!({
            "start_ms": h.start_ms,
            "jobs": h.jobs,
            "mean_job_ms": h.mean_job_ms,
            "failures": h.failures,
        })).collect::<Vec<_>>(),
        "health": {
            "passages": h.passages,
            "index_entries": h.index_entries,
            "index_memory_bytes": h.index_memory_bytes,
            "index_file_bytes": h.index_file_bytes,
            "database_bytes": h.database_bytes,
            "index_agrees": h.agreement.is_ok(),
            "index_problem": h.agreement.as_ref().err(),
            "duplicate_vectors": h.duplicate_vectors,
            "queued_jobs": h.queued_jobs,
            "memory_mib": h.memory_mib.map(|(now, _)| now),
            "peak_memory_mib": h.memory_mib.map(|(_, peak)| peak),
        },
    })
}

pub(crate) fn text(stats: &Stats) -> String {
    let mut lines = Vec::new();
    if stats.keep_days == 0 {
        lines.push("metrics are off (doppel settings set metrics_days 30 turns them on)".into());
    }
    lines.push(format!("last {} days", stats.days));
    let times = |metric: Metric, title: &str, lines: &mut Vec<String>| {
        for s in stats.of(metric) {
            let label = if s.label.is_empty() { String::new() } else { format!(" {}", s.label) };
            lines.push(format!(
                "{title}{label}: {} × p50 {} p95 {} p99 {}",
                s.count,
                ms(s.p50),
                ms(s.p95),
                ms(s.p99)
            ));
        }
    };
    times(Metric::JobTime, "jobs", &mut lines);
    for s in stats.of(Metric::JobPassages) {
        if let Some(rate) = stats.per_second(Metric::JobPassages, Metric::JobTime, &s.label) {
            lines.push(format!("  {}: {:.0} passages, {rate:.1} passages/s", s.label, s.sum));
        }
    }
    let failures: Vec<String> =
        stats.of(Metric::JobFailed).map(|s| format!("{} {}", s.label, s.count)).collect();
    if !failures.is_empty() {
        lines.push(format!("failed attempts by reason: {}", failures.join(", ")));
    }
    for s in stats.of(Metric::EmbedTime) {
        let rate = stats.per_second(Metric::EmbedPassages, Metric::EmbedTime, &s.label);
        lines.push(format!(
            "embedding {}: {} batches, p50 {} p99 {}, {:.1} passages/s",
            s.label,
            s.count,
            ms(s.p50),
            ms(s.p99),
            rate.unwrap_or(0.0)
        ));
    }
    times(Metric::SearchTime, "searches", &mut lines);
    times(Metric::AnswerTime, "answers", &mut lines);
    times(Metric::FirstPiece, "first piece", &mut lines);
    let counted = |metric: Metric| stats.total(metric) as u64;
    lines.push(format!(
        "answers cancelled {}, replaced as unsupported {}",
        counted(Metric::AnswerCancelled),
        counted(Metric::AnswerUnsupported)
    ));
    times(Metric::ReadWait, "reads that waited for a connection", &mut lines);
    times(Metric::CommandWait, "requests to the worker", &mut lines);
    if let Some(depth) = stats.summary(Metric::QueueDepth, "") {
        lines.push(format!("queue depth: p50 {:.0}, max {:.0}", depth.p50, depth.max));
    }
    for s in stats.of(Metric::JobPeakMemory) {
        lines.push(format!(
            "peak memory in {} jobs: p50 {:.0} MiB, max {:.0} MiB",
            s.label, s.p50, s.max
        ));
    }
    let h = &stats.health;
    lines.push(format!(
        "index: {} entries for {} passages, {:.1} MiB in memory, {:.1} MiB on disk, {} duplicate vectors, {}",
        h.index_entries,
        h.passages,
        mib(h.index_memory_bytes),
        mib(h.index_file_bytes),
        h.duplicate_vectors,
        match &h.agreement {
            Ok(()) => "agrees with the database".to_string(),
            Err(e) => format!("DISAGREES: {e}"),
        }
    ));
    lines.push(format!(
        "database: {:.1} MiB; queued jobs: {}",
        mib(h.database_bytes),
        h.queued_jobs
    ));
    if !stats.hours.is_empty() {
        let last = &stats.hours[stats.hours.len().saturating_sub(CHART_HOURS)..];
        lines.push(format!("jobs per hour       {}", chart(last.iter().map(|h| h.jobs as f64))));
        lines.push(format!("mean time per job   {}", chart(last.iter().map(|h| h.mean_job_ms))));
    }
    lines.join("\n")
}

fn ms(value: f64) -> String {
    if value >= 1000.0 { format!("{:.1} s", value / 1000.0) } else { format!("{value:.0} ms") }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A one-line bar chart of `values`, scaled to their largest.
fn chart(values: impl Iterator<Item = f64>) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let values: Vec<f64> = values.collect();
    let top = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|v| if top > 0.0 { BARS[((v / top) * 7.0).round() as usize] } else { BARS[0] })
        .collect()
}
