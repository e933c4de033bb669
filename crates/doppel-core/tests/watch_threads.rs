//! Dropping a watching `Doppel` leaves nothing of watching running. This file holds one test
//! so that it is alone in its process: it counts the process's threads and descriptors.

use std::path::Path;

use doppel_core::*;

/// Threads of this process with this name.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Threads of this process with this name, once the kernel has reaped those that ended: a
/// thread that was joined is gone, but its entry in `/proc` may outlive the join by a moment.
fn live_threads_named(name: &str) -> usize {
    let start = std::time::Instant::now();
    loop {
        let count = threads_named(name);
        if count == 0 || start.elapsed() > std::time::Duration::from_secs(10) {
            return count;
        }
        std::thread::yield_now();
    }
}

/// Open inotify instances of this process.
fn inotify_instances() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.unwrap().path()).ok())
        .filter(|target| target == Path::new("anon_inode:inotify"))
        .count()
}

/// The thread of the `notify` crate's inotify backend ("notify-rs inotify loop"), as the
/// kernel shortens thread names to 15 bytes.
const NOTIFY_THREAD: &str = "notify-rs inoti";

#[test]
fn dropping_a_watching_handle_ends_the_watcher_and_its_inotify_instance() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("a.md"), "# A\nSome text.").unwrap();
    for round in 0..5 {
        let (subscriber, events) = std::sync::mpsc::channel();
        let config = Config {
            watch: true,
            subscriber: Some(subscriber),
            models: Some(data.path().join("no-models")),
            ..Config::new(data.path())
        };
        let doppel = Doppel::open(config).unwrap();
        if round == 0 {
            doppel.watch_folder(DEFAULT_TWIN, files.path()).unwrap();
        }
        // The catch-up has run: the watcher is fully up.
        let deadline = std::time::Duration::from_secs(60);
        while !matches!(events.recv_timeout(deadline).unwrap(), Event::WatchChanged { .. }) {}
        assert_eq!(threads_named("doppel-watch"), 1);
        assert_eq!(threads_named(NOTIFY_THREAD), 1);
        assert_eq!(inotify_instances(), 1);
        drop(doppel);
        // Closed before the handle's drop returns.
        assert_eq!(inotify_instances(), 0, "round {round}");
        for name in ["doppel-watch", NOTIFY_THREAD, "doppel-worker"] {
            assert_eq!(live_threads_named(name), 0, "{name} in round {round}");
        }
    }
    // Without watching on, none is started.
    let doppel = Doppel::open(Config {
        models: Some(data.path().join("no-models")),
        ..Config::new(data.path())
    })
    .unwrap();
    assert_eq!((threads_named("doppel-watch"), inotify_instances()), (0, 0));
    drop(doppel);
}
