//! `/v1/search` latency under 50 concurrent clients over real HTTP on loopback (bench/api).
//!
//! The twin: the en-US Debian handbook's HTML pages, learnt once with the local embedding model
//! into `$DOPPEL_BENCH_DATA` (default /var/tmp/doppel-bench-api) and reused. Each client keeps
//! its connection open and sends its requests one after another; every request's time from
//! sending to the last byte is recorded. Prints p50, p90, p99, max and requests per second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doppel_api::{ApiServer, Limits};
use doppel_core::access::{Scope, TokenRequest};
use doppel_core::{Config, DEFAULT_TWIN, Doppel, IngestRequest};

const CLIENTS: usize = 50;
const REQUESTS: usize = 40;
const QUERIES: &[&str] = &[
    "install a package with apt",
    "configure the network interfaces",
    "backports and stable release",
    "set up a mail server with postfix",
    "LDAP directory",
    "firewall rules with nftables",
    "virtual machines with KVM",
    "RAID and LVM volumes",
    "the boot process and GRUB",
    "user accounts and groups",
    "printing with CUPS",
    "Apache web server virtual hosts",
    "Debian Free Software Guidelines",
    "security updates",
    "compiling a kernel",
    "NFS file sharing",
    "time synchronisation with NTP",
    "logging with rsyslog",
    "backup strategies",
    "the package maintainer scripts",
];

/// The search URL for `q` (the queries hold only letters and spaces).
fn search(url: &str, q: &str) -> String {
    format!("{url}?q={}", q.replace(' ', "%20"))
}

fn main() -> anyhow::Result<()> {
    let data = std::env::var_os("DOPPEL_BENCH_DATA")
        .map_or_else(|| PathBuf::from("/var/tmp/doppel-bench-api"), PathBuf::from);
    let doppel = Arc::new(Doppel::open(Config::new(&data))?);
    if doppel.sources(DEFAULT_TWIN)?.is_empty() {
        let pages: Vec<PathBuf> = std::fs::read_dir("/usr/share/doc/debian-handbook/html/en-US")?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "html"))
            .collect();
        let started = Instant::now();
        let report = doppel.ingest(IngestRequest::paths(pages))?;
        let jobs: Vec<i64> = report.queued.iter().map(|q| q.job_id).collect();
        doppel.wait_for(&jobs, |_| {})?;
        println!("learnt {} pages in {:.1} s", jobs.len(), started.elapsed().as_secs_f64());
    }
    let status = doppel.vector_status();
    println!(
        "twin: {} sources, {} vectors in the index, model {}",
        doppel.sources(DEFAULT_TWIN)?.len(),
        status.index_entries,
        status.model.as_ref().map_or("none (keyword search)".into(), |m| m.name.clone())
    );
    let token = doppel.create_api_token(&TokenRequest {
        twin: DEFAULT_TWIN,
        name: "bench".into(),
        scope: Scope::Read,
        rate_per_minute: Some(100_000),
        daily_tokens: None,
    })?;
    let server = ApiServer::start(Arc::clone(&doppel), "127.0.0.1:0".parse()?, Limits::default())?;
    let url = format!("http://{}/v1/search", server.address());
    let secret = token.secret.clone();
    // Warm-up: the model and the index in memory, connections opened.
    let warm = reqwest::blocking::Client::new();
    for q in QUERIES {
        warm.get(search(&url, q)).bearer_auth(&secret).send()?.error_for_status()?;
    }
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, secret) = (url.clone(), secret.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let client = reqwest::blocking::Client::new();
                let mut times = Vec::with_capacity(REQUESTS);
                for r in 0..REQUESTS {
                    let q = QUERIES[(c * 7 + r) % QUERIES.len()];
                    let at = Instant::now();
                    let body = client.get(search(&url, q)).bearer_auth(&secret).send()?;
                    let body = body.error_for_status()?.bytes()?;
                    times.push(at.elapsed());
                    anyhow::ensure!(!body.is_empty());
                }
                Ok(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for client in clients {
        times.extend(client.join().map_err(|_| anyhow::anyhow!("a client panicked"))??);
    }
    let wall = started.elapsed();
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p).ceil() as usize).min(times.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "/v1/search, {CLIENTS} clients x {REQUESTS} requests: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.0} requests/s",
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
        times.len() as f64 / wall.as_secs_f64()
    );
    drop(server);
    doppel.revoke_api_token(token.token.id)?;
    Ok(())
}
