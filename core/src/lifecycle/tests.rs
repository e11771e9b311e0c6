use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
};

use futures_util::FutureExt;

use super::*;

const FAST: Backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(100) };

/// Waits until `done` holds, for at most five seconds.
async fn eventually(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_job_that_panics_is_restarted() {
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let manager = Manager::start(
        vec![job("panics once", move |mut stop| {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run");
                }
                let _ = stop.wait_for(|stop| *stop).await;
            }
            .boxed()
        })],
        FAST,
    );
    eventually(|| runs.load(Ordering::SeqCst) == 2).await;
    manager.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the second run was stopped, not restarted");
}

#[tokio::test]
async fn a_job_that_keeps_panicking_waits_longer_each_time() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let recorded = starts.clone();
    let manager = Manager::start(
        vec![job("always panics", move |_| {
            recorded.lock().unwrap().push(Instant::now());
            async { panic!("always") }.boxed()
        })],
        Backoff { initial: Duration::from_millis(20), max: Duration::from_secs(1) },
    );
    eventually(|| starts.lock().unwrap().len() >= 4).await;
    manager.stop().await;
    let starts = starts.lock().unwrap();
    let pauses: Vec<Duration> = starts.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(pauses[0] >= Duration::from_millis(20), "{pauses:?}");
    assert!(pauses[2] >= Duration::from_millis(80), "doubled twice: {pauses:?}");
}

#[tokio::test]
async fn a_job_that_returns_is_not_restarted() {
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let manager = Manager::start(
        vec![job("returns", move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}.boxed()
        })],
        FAST,
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    manager.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Stop drains: each worker finishes what it does after its signal, and the
/// job started first stops last.
#[tokio::test]
async fn stop_waits_for_each_job_in_reverse_start_order() {
    let finished = Arc::new(Mutex::new(Vec::new()));
    let draining = |name: &'static str| {
        let finished = finished.clone();
        job(name, move |mut stop| {
            let finished = finished.clone();
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
                // Work after the signal, as the final position flush is.
                tokio::time::sleep(Duration::from_millis(30)).await;
                finished.lock().unwrap().push(name);
            }
            .boxed()
        })
    };
    let manager = Manager::start(vec![draining("first"), draining("second"), draining("third")], FAST);
    assert_eq!(manager.names(), ["first", "second", "third"]);
    manager.stop().await;
    assert_eq!(*finished.lock().unwrap(), ["third", "second", "first"]);
}

#[tokio::test]
async fn a_job_that_ignores_stop_is_aborted_after_the_drain_timeout() {
    let mut manager = Manager::start(vec![job("stuck", |_| std::future::pending().boxed())], FAST);
    manager.drain_timeout = Duration::from_millis(50);
    let started = Instant::now();
    manager.stop().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}
