//! Crash test (acceptance 3 of issue 2): stream uniquely numbered events with acks, SIGKILL the
//! forwarder at a random moment, restart it on the same disk, repeat. Every event acknowledged
//! before a kill must reach the output, and (since out_file names chunk files by chunk id and
//! the client never resends) no event may appear twice.
//!
//! `LOGRAFT_CRASH_KILLS` sets the number of kills (default 20) for longer soak runs.

mod common;
use common::*;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn acked_events_survive_repeated_sigkill() {
    let kills: u32 = std::env::var("LOGRAFT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = ConfigText::new()
        .forward_source(port)
        .out_file(
            "crash.**",
            dir.path().join("out").join("events"),
            BufferText::file(dir.path().join("buffer"))
                .param("flush_interval", "0.2s")
                .param("chunk_limit_size", "1m"),
        )
        .build();
    let mut node = Node::start(dir.path(), &conf, &[port]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let next_seq = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut rng = rand::thread_rng();

    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let (next_seq, acked, stop) = (next_seq.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let Ok(mut c) = ForwardClient::connect(addr) else {
                        return;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let start = next_seq.fetch_add(200, Ordering::Relaxed);
                        match c.send_acked("crash.test", start..start + 200, 80) {
                            Ok(()) => acked.lock().unwrap().extend(start..start + 200),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..600)));
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        node.spawn();
        assert!(
            node.is_running(),
            "round {round}: restart failed; log:\n{}",
            node.log_text()
        );
    }

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 1000,
        "the stream barely ran: {} acked",
        acked.len()
    );
    let out = dir.path().join("out");
    let all_there = wait_until(Duration::from_secs(60), || {
        let c = seq_counts(&read_out_file_records(&out));
        acked.iter().all(|s| c.contains_key(s))
    });
    let counts = seq_counts(&read_out_file_records(&out));
    let missing: Vec<_> = acked
        .iter()
        .filter(|s| !counts.contains_key(s))
        .take(10)
        .collect();
    assert!(
        all_there,
        "{} acked events missing after {kills} kills, e.g. {missing:?}; log tail:\n{}",
        acked.iter().filter(|s| !counts.contains_key(s)).count(),
        tail(&node.log_text())
    );
    let dups: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).take(10).collect();
    assert!(dups.is_empty(), "events delivered twice: {dups:?}");
    assert_eq!(node.terminate(), Some(0));
}

fn tail(s: &str) -> String {
    let lines: Vec<_> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
