//! The Diagnostics card's commands: the local metrics and the diagnostic report.

use doppel_core::metrics::Stats;
use serde::Serialize;
use tauri::State;

use crate::error::IpcError;
use crate::state::Shell;

type Reply<T> = Result<T, IpcError>;

/// One metric and label over the period.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricDto {
    pub metric: &'static str,
    pub label: String,
    pub count: u64,
    pub sum: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One hour of work.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourDto {
    pub start_ms: i64,
    pub jobs: u64,
    pub mean_job_ms: f64,
    pub failures: u64,
}

/// The twin's health now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthDto {
    pub passages: u64,
    pub index_entries: u64,
    pub index_memory_bytes: u64,
    pub index_file_bytes: u64,
    pub database_bytes: u64,
    /// Why the index and the database disagree, when they do.
    pub index_problem: Option<String>,
    pub duplicate_vectors: u64,
    pub queued_jobs: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsDto {
    pub days: u32,
    pub keep_days: u32,
    pub metrics: Vec<MetricDto>,
    pub hours: Vec<HourDto>,
    pub health: HealthDto,
}

fn dto(stats: Stats) -> StatsDto {
    let h = stats.health;
    StatsDto {
        days: stats.days,
        keep_days: stats.keep_days,
        metrics: stats
            .summaries
            .into_iter()
            .map(|s| MetricDto {
                metric: s.metric.as_str(),
                label: s.label,
                count: s.count,
                sum: s.sum,
                p50: s.p50,
                p95: s.p95,
                p99: s.p99,
                max: s.max,
            })
            .collect(),
        hours: stats
            .hours
            .into_iter()
            .map(|h| HourDto {
                start_ms: h.start_ms,
                jobs: h.jobs,
                mean_job_ms: h.mean_job_ms,
                failures: h.failures,
            })
            .collect(),
        health: HealthDto {
            passages: h.passages,
            index_entries: h.index_entries,
            index_memory_bytes: h.index_memory_bytes,
            index_file_bytes: h.index_file_bytes,
            database_bytes: h.database_bytes,
            index_problem: h.agreement.err(),
            duplicate_vectors: h.duplicate_vectors,
            queued_jobs: h.queued_jobs,
        },
    }
}

#[tauri::command]
pub async fn stats(shell: State<'_, Shell>, days: Option<u32>) -> Reply<StatsDto> {
    shell.run(move |d| Ok(dto(d.stats(days.unwrap_or(30))?))).await
}

#[tauri::command]
pub async fn diagnostic_report(shell: State<'_, Shell>) -> Reply<String> {
    shell.run(|d| Ok(d.report()?)).await
}

/// The metric names the window knows, so that a rename is caught here and not in the page.
#[cfg(test)]
mod tests {
    use doppel_core::metrics::Metric;

    #[test]
    fn the_window_knows_every_metric_by_its_name() {
        let page = include_str!("../../ui/src/views/Diagnostics.tsx");
        for metric in [Metric::JobTime, Metric::JobFailed, Metric::SearchTime, Metric::AnswerTime] {
            assert!(page.contains(&format!("\"{}\"", metric.as_str())), "{}", metric.as_str());
        }
    }
}
