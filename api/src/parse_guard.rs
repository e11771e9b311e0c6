//! Runs ruma's request parsers so that a panic on malformed input (some of
//! its deserializers index JSON maps, so `{}` sent to `/login` panics) is an
//! ordinary failure: caught, and kept out of the panic hook, whose report
//! (a backtrace of hundreds of lines) anyone could otherwise have written
//! to the log with one unauthenticated request.

use std::{
    cell::Cell,
    panic::{self, AssertUnwindSafe},
    sync::Once,
};

thread_local! {
    static PARSING: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// `parse()`, or `None` if it panicked.
pub fn parse<T>(parse: impl FnOnce() -> T) -> Option<T> {
    QUIET_HOOK.call_once(|| {
        let report = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !PARSING.with(Cell::get) {
                report(info);
            }
        }));
    });
    PARSING.with(|parsing| parsing.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(parse));
    PARSING.with(|parsing| parsing.set(false));
    result.ok()
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[test]
    fn a_panicking_parser_is_a_failure_that_reaches_no_panic_hook() {
        let reported = Arc::new(AtomicUsize::new(0));
        let counter = reported.clone();
        panic::set_hook(Box::new(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }));

        assert_eq!(parse(|| -> u8 { panic!("no entry found for key") }), None);
        assert_eq!(parse(|| 7), Some(7));
        assert_eq!(reported.load(Ordering::SeqCst), 0, "a parser's panic is not reported");

        // Any other panic still is, on this thread or another.
        let _ = std::thread::spawn(|| panic!("a real bug")).join();
        assert_eq!(reported.load(Ordering::SeqCst), 1);
    }
}
