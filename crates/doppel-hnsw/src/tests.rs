//! The index against exact search, on many threads, through deletes, and through its file.

use super::*;

const DIM: usize = 64;

/// Clustered unit vectors, as passages of a few subjects are: `clusters` centres, each point a
/// centre plus Gaussian noise, normalised.
fn clustered(n: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let mut gauss = move || {
        let (u, v) = (uniform().max(1e-9), uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let centres: Vec<Vec<f32>> =
        (0..clusters).map(|_| normalised(&(0..DIM).map(|_| gauss()).collect::<Vec<_>>())).collect();
    (0..n)
        .map(|i| {
            let centre = &centres[i % clusters];
            let point: Vec<f32> = centre.iter().map(|c| c + 0.12 * gauss()).collect();
            normalised(&point)
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// recall@10 over `queries` against exact search among the `live` keys (a found key counts
/// when it is as close as the tenth true neighbour).
fn recall(
    index: &Hnsw,
    vectors: &[Vec<f32>],
    live: &[u64],
    queries: &[Vec<f32>],
    ef: usize,
) -> f64 {
    let mut hits = 0;
    for query in queries {
        let mut exact: Vec<f32> = live.iter().map(|&k| dot(query, &vectors[k as usize])).collect();
        exact.sort_by(|a, b| b.total_cmp(a));
        let tenth = exact[9];
        let found = index.search(query, 10, ef);
        hits += found.iter().filter(|(_, s)| *s >= tenth - 1e-5).count();
    }
    hits as f64 / (queries.len() * 10) as f64
}

const PARAMS: Params = Params { m: 16, ef_construction: 128 };

#[test]
fn recall_at_10_against_exact_search() {
    let vectors = clustered(6000, 60, 7);
    let queries = clustered(200, 60, 8);
    let mut index = Hnsw::new(DIM, PARAMS);
    for (key, v) in vectors.iter().enumerate() {
        index.add(key as u64, v).unwrap();
    }
    assert_eq!(index.len(), 6000);
    let live: Vec<u64> = (0..6000).collect();
    let r = recall(&index, &vectors, &live, &queries, 128);
    assert!(r >= 0.95, "recall@10 {r}");
    // The similarity returned is the exact cosine.
    let (key, similarity) = index.search(&vectors[17], 1, 64)[0];
    assert_eq!(key, 17);
    assert!((similarity - 1.0).abs() < 1e-5, "{similarity}");
}

#[test]
fn a_build_on_many_threads_loses_no_node() {
    let vectors = clustered(8000, 80, 11);
    let items: Vec<(u64, &[f32])> =
        vectors.iter().enumerate().map(|(k, v)| (k as u64 * 3 + 1, v.as_slice())).collect();
    let mut index = Hnsw::new(DIM, PARAMS);
    let mut reports = Vec::new();
    index
        .build(&items, 8, &AtomicBool::new(false), |done, total| reports.push((done, total)))
        .unwrap();
    assert_eq!(index.len(), 8000);
    assert_eq!(reports.last(), Some(&(8000, 8000)));
    let lost: Vec<u64> = items
        .iter()
        .filter(|(key, v)| index.search(v, 1, 64).first().map(|h| h.0) != Some(*key))
        .map(|(key, _)| *key)
        .collect();
    assert!(lost.is_empty(), "{} of 8000 not found by their own vector: {lost:?}", lost.len());
    let queries = clustered(200, 80, 12);
    let shifted: Vec<Vec<f32>> = {
        // recall() indexes vectors by key: lay them out under their keys.
        let mut by_key = vec![vec![0.0; DIM]; 8000 * 3 + 1];
        for (key, v) in &items {
            by_key[*key as usize] = v.to_vec();
        }
        by_key
    };
    let live: Vec<u64> = items.iter().map(|(k, _)| *k).collect();
    let r = recall(&index, &shifted, &live, &queries, 128);
    assert!(r >= 0.95, "recall@10 {r}");
}

#[test]
fn removing_repairs_the_graph_and_forgets_the_vectors() {
    let vectors = clustered(6000, 60, 21);
    let items: Vec<(u64, &[f32])> =
        vectors.iter().enumerate().map(|(k, v)| (k as u64, v.as_slice())).collect();
    let mut index = Hnsw::new(DIM, PARAMS);
    index.build(&items, 2, &AtomicBool::new(false), |_, _| {}).unwrap();
    // A whole subject goes (as a source's passages do), and a scattering of others.
    let removed: Vec<u64> = (0..6000u64).filter(|k| k % 60 == 5 || k % 97 == 0).collect();
    assert_eq!(index.remove(&removed), removed.len());
    assert_eq!(index.remove(&removed), 0, "a second removal finds nothing");
    let live: Vec<u64> = (0..6000u64).filter(|k| !removed.contains(k)).collect();
    assert_eq!(index.len(), live.len());
    for &key in &removed {
        assert!(!index.contains(key));
        let hits = index.search(&vectors[key as usize], 20, 64);
        assert!(hits.iter().all(|(k, _)| !removed.contains(k)), "a removed key was found");
    }
    let unreachable: Vec<u64> = live
        .iter()
        .copied()
        .filter(|&k| index.search(&vectors[k as usize], 1, 64).first().map(|h| h.0) != Some(k))
        .collect();
    assert!(
        unreachable.is_empty(),
        "{} live nodes unreachable after the removal",
        unreachable.len()
    );
    let queries = clustered(200, 60, 22);
    let r = recall(&index, &vectors, &live, &queries, 128);
    assert!(r >= 0.95, "recall@10 after removal {r}");
    // No byte of a removed vector stays, in memory or in the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.hnsw");
    index.save(&path).unwrap();
    let file = std::fs::read(&path).unwrap();
    for &key in removed.iter().take(50) {
        let needle: Vec<u8> =
            vectors[key as usize][..4].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(
            !file.windows(16).any(|w| w == needle.as_slice()),
            "the file holds removed vector {key}"
        );
        let memory = as_bytes(index.words());
        assert!(
            !memory.windows(16).any(|w| w == needle.as_slice()),
            "memory holds removed vector {key}"
        );
    }
    // Their slots are reused: adding as many back does not grow the index.
    let slots = index.keys.len();
    for &key in &removed {
        index.add(key, &vectors[key as usize]).unwrap();
    }
    assert_eq!(index.keys.len(), slots);
    let all: Vec<u64> = (0..6000).collect();
    let r = recall(&index, &vectors, &all, &queries, 128);
    assert!(r >= 0.95, "recall@10 after adding back {r}");
}

fn as_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn removing_everything_then_adding_again() {
    let vectors = clustered(300, 5, 31);
    let mut index = Hnsw::new(DIM, PARAMS);
    for (key, v) in vectors.iter().enumerate() {
        index.add(key as u64, v).unwrap();
    }
    let all: Vec<u64> = (0..300).collect();
    assert_eq!(index.remove(&all), 300);
    assert!(index.is_empty());
    assert!(index.search(&vectors[0], 5, 32).is_empty());
    index.add(7, &vectors[7]).unwrap();
    assert_eq!(index.search(&vectors[0], 5, 32).len(), 1);
}

#[test]
fn adding_a_key_again_replaces_its_vector() {
    let vectors = clustered(500, 10, 41);
    let mut index = Hnsw::new(DIM, PARAMS);
    for (key, v) in vectors.iter().enumerate() {
        index.add(key as u64, v).unwrap();
    }
    index.add(3, &vectors[400]).unwrap();
    assert_eq!(index.len(), 500);
    let hits = index.search(&vectors[400], 2, 64);
    assert!(hits.iter().any(|h| h.0 == 3), "{hits:?}");
    assert!(index.search(&vectors[3], 1, 64)[0].0 != 3);
}

#[test]
fn bad_vectors_are_refused() {
    let mut index = Hnsw::new(DIM, PARAMS);
    assert_eq!(index.add(1, &[0.5; 3]), Err(AddError::Dimension { expected: DIM, got: 3 }));
    assert_eq!(index.add(u64::MAX, &[0.5; DIM]), Err(AddError::ReservedKey));
    let mut v = vec![0.5; DIM];
    v[9] = f32::NAN;
    assert_eq!(index.add(1, &v), Err(AddError::NotFinite));
    assert!(index.is_empty());
}

#[test]
fn the_file_round_trips_and_a_damaged_one_is_refused() {
    let vectors = clustered(2000, 20, 51);
    let items: Vec<(u64, &[f32])> =
        vectors.iter().enumerate().map(|(k, v)| (k as u64 + 100, v.as_slice())).collect();
    let mut index = Hnsw::new(DIM, PARAMS);
    index.build(&items, 2, &AtomicBool::new(false), |_, _| {}).unwrap();
    index.remove(&[100, 150, 1999]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.hnsw");
    index.save(&path).unwrap();
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["index.hnsw"], "no temporary file stays");
    let loaded = Hnsw::load(&path, DIM, PARAMS).unwrap();
    assert_eq!(loaded.len(), index.len());
    for v in vectors.iter().step_by(37) {
        assert_eq!(loaded.search(v, 10, 64), index.search(v, 10, 64));
    }
    let mut grown = loaded;
    grown.add(100, &vectors[0]).unwrap();
    assert_eq!(grown.keys.len(), index.keys.len(), "a freed slot is reused after a load");

    assert!(matches!(Hnsw::load(&path, 32, PARAMS), Err(LoadError::Mismatch(_))));
    assert!(matches!(
        Hnsw::load(&path, DIM, Params { m: 8, ..PARAMS }),
        Err(LoadError::Mismatch(_))
    ));
    let good = std::fs::read(&path).unwrap();
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("a flipped byte", {
            let mut b = good.clone();
            let at = b.len() * 2 / 3;
            b[at] ^= 0x40;
            b
        }),
        ("a huge slot count", {
            let mut b = good.clone();
            b[8 + 4 * 8..8 + 5 * 8].copy_from_slice(&(u32::MAX as u64 - 2).to_le_bytes());
            b
        }),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let result = Hnsw::load(&path, DIM, PARAMS);
        assert!(matches!(result, Err(LoadError::Invalid(_))), "{what}: {:?}", result.err());
    }
}

/// The child of the test below: saves an index again and again, saying so after each save.
const SAVE_FOREVER: &str = "DOPPEL_HNSW_TEST_SAVE_FOREVER";

#[test]
fn a_kill_during_a_save_leaves_a_whole_file() {
    let vectors = clustered(3000, 30, 61);
    let items: Vec<(u64, &[f32])> =
        vectors.iter().enumerate().map(|(k, v)| (k as u64, v.as_slice())).collect();
    let mut index = Hnsw::new(DIM, PARAMS);
    index.build(&items, 2, &AtomicBool::new(false), |_, _| {}).unwrap();
    if let Some(path) = std::env::var_os(SAVE_FOREVER) {
        let path = std::path::PathBuf::from(path);
        for round in 0u64.. {
            // Every tenth save differs from the last: one vector fewer.
            if round % 10 == 9 {
                index.remove(&[round]);
            }
            index.save(&path).unwrap();
            println!("saved {}", index.len());
        }
    }
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.hnsw");
    let mut cut = 0;
    for round in 0..10 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::a_kill_during_a_save_leaves_a_whole_file", "--nocapture"])
            .env(SAVE_FOREVER, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // Saves follow each other without a pause: the kill lands inside one of them.
        let mut last = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(count) = line.strip_prefix("saved ") {
                last = Some(count.parse::<usize>().unwrap());
                if last < Some(3000 - round) {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        cut += usize::from(dir.path().join("index.hnsw.tmp").exists());
        let loaded = Hnsw::load(&path, DIM, PARAMS).expect("the file is whole after a kill");
        let saved = last.unwrap();
        // The last save it reported, or one it finished after.
        assert!(loaded.len() <= saved, "{} after {saved}", loaded.len());
        assert_eq!(loaded.search(&vectors[2999], 1, 64)[0].0, 2999);
    }
    println!("{cut} of 10 kills left a save half-written");
}

#[test]
fn a_removal_is_planned_while_searches_go_on_and_replanned_after_a_change() {
    let vectors = clustered(4000, 40, 71);
    let items: Vec<(u64, &[f32])> =
        vectors.iter().enumerate().map(|(k, v)| (k as u64, v.as_slice())).collect();
    let mut index = Hnsw::new(DIM, PARAMS);
    index.build(&items, 2, &AtomicBool::new(false), |_, _| {}).unwrap();
    let removed: Vec<u64> = (0..4000u64).filter(|k| k % 40 == 3).collect();
    // Planning reads only: searches on other threads share the index meanwhile.
    let plan = std::thread::scope(|scope| {
        let searches = scope.spawn(|| {
            (0..200).filter(|&k| index.search(&vectors[k], 1, 64)[0].0 == k as u64).count()
        });
        let plan = index.plan_removal(&removed);
        assert_eq!(searches.join().unwrap(), 200);
        plan
    });
    assert_eq!(plan.len(), removed.len());
    assert_eq!(index.len(), 4000, "a plan changes nothing");
    // A change after the plan: the plan is made again at apply, so the new node stays linked.
    index.add(9999, &vectors[3]).unwrap();
    assert_eq!(index.apply(plan), removed.len());
    assert_eq!(index.search(&vectors[3], 1, 64)[0].0, 9999);
    for k in (0..4000u64).filter(|k| !removed.contains(k)).step_by(7) {
        assert_eq!(index.search(&vectors[k as usize], 1, 64)[0].0, k);
    }
}

#[test]
fn a_cancelled_build_stops_and_says_so() {
    let items: Vec<(u64, Vec<f32>)> = (0..2_000u64)
        .map(|k| (k, (0..16).map(|d| ((k * 31 + d) % 97) as f32 + 1.0).collect()))
        .collect();
    let refs: Vec<(u64, &[f32])> = items.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let mut index = Hnsw::new(16, Params { m: 8, ef_construction: 32 });
    let cancel = AtomicBool::new(false);
    let mut reports = 0;
    let result = index.build(&refs, 2, &cancel, |_, _| {
        reports += 1;
        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(matches!(result, Err(AddError::Cancelled)), "{result:?}");
    assert_eq!(reports, 1, "no progress is reported after the cancel");
}
