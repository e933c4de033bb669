//! CR2, M4 and L2 (the share link's auth bypass, weak rate limits, an open admin port) cannot
//! happen here because Doppel serves nothing: no socket of this process listens while the core
//! opens a data directory, ingests, watches a folder, searches and answers. This is its own test
//! binary, so that no other test's loopback server shares the process.

mod common;

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use doppel_core::chat::AskRequest;
use doppel_core::*;

/// The inodes of this process's sockets.
fn own_sockets() -> HashSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect()
}

/// The inodes of the listening TCP and UDP sockets of this network namespace, by table.
fn listening() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // TCP in LISTEN (0A); any bound UDP socket (07, unconnected) receives datagrams.
            let open = match table {
                "tcp" | "tcp6" => fields.get(3) == Some(&"0A"),
                _ => fields.get(3) == Some(&"07"),
            };
            if open && let Some(inode) = fields.get(9) {
                out.push((table.to_string(), inode.to_string()));
            }
        }
    }
    out
}

fn listening_here() -> Vec<(String, String)> {
    let own = own_sockets();
    listening().into_iter().filter(|(_, inode)| own.contains(inode)).collect()
}

#[test]
fn cr2_no_socket_listens_while_the_core_works() {
    let data = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("garden.md"), "# Garden\nTomatoes went in during May.\n")
        .unwrap();
    let config =
        Config { models: Some(common::model_cache()), watch: true, ..Config::new(data.path()) };
    let doppel = Doppel::open(config).unwrap();
    let report = doppel.ingest(IngestRequest::paths(vec![folder.path().to_path_buf()])).unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap();
    doppel.watch_folder(DEFAULT_TWIN, folder.path()).unwrap();
    let hits = doppel.search(&SearchRequest::new("when did the tomatoes go in")).unwrap().hits;
    assert!(!hits.is_empty(), "the twin works");
    let answer = doppel
        .ask(&AskRequest::new("When did the tomatoes go in?"), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert!(answer.message.content.contains("May"), "{:?}", answer.message);
    assert_eq!(listening_here(), Vec::<(String, String)>::new(), "a socket of Doppel listens");

    // The check itself sees a listener when there is one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(listening_here().len(), 1);
    drop(listener);
}
