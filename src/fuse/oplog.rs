//! Which request a thread is answering, so that a failed reply can say which.
//!
//! fuser sends replies itself and, when the kernel refuses one, logs only
//! `Failed to send FUSE reply: <error>` at error level, with no operation or inode. The
//! usual cause is harmless: the request was interrupted (its caller got a fatal signal,
//! or gave up), the kernel forgot it, and writing its reply to `/dev/fuse` fails with
//! `ENOENT`. Backup tools written in Go (restic) interrupt requests routinely.
//!
//! Each callback of the adapter enters a [`Scope`] naming the operation and inode (a
//! job handed to another thread takes the scope along), and [`ReplyLog`] wraps the
//! process's logger: it rewrites fuser's line with the operation, at debug level for
//! `ENOENT` (nothing is wrong) and at error level for anything else.

use std::cell::Cell;

use log::{Level, Log, Metadata, Record};

/// The operation and inode a thread is answering.
pub type Op = (&'static str, u64);

thread_local! {
    static CURRENT: Cell<Option<Op>> = const { Cell::new(None) };
}

/// While alive, the thread is answering `op`; the previous one is restored on drop.
pub struct Scope(Option<Op>);

impl Scope {
    pub fn enter(name: &'static str, ino: u64) -> Scope {
        Scope::restore(Some((name, ino)))
    }

    /// Re-enters a scope taken from [`current`] on another thread (`None`: no scope).
    pub fn restore(op: Option<Op>) -> Scope {
        Scope(CURRENT.with(|c| c.replace(op)))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// The operation this thread is answering, if any.
pub fn current() -> Option<Op> {
    CURRENT.with(Cell::get)
}

/// fuser's line for a reply the kernel refused.
const FUSER_REPLY_FAILED: &str = "Failed to send FUSE reply: ";

/// A logger that tells fuser's failed replies for what they are (see the module doc) and
/// passes every other record to `inner` unchanged.
pub struct ReplyLog<L> {
    inner: L,
}

impl<L: Log> ReplyLog<L> {
    pub fn new(inner: L) -> ReplyLog<L> {
        ReplyLog { inner }
    }
}

/// How to log a failed reply: its level and message, from fuser's error text.
fn describe_failed_reply(error: &str, op: Option<Op>) -> (Level, String) {
    let what = match op {
        Some((name, ino)) => format!("{name} of inode {ino}"),
        None => "a request".to_string(),
    };
    // the kernel answers ENOENT for a request it no longer knows
    if error.starts_with("No such file or directory") {
        let msg = format!("the reply to {what} was not delivered: the request was interrupted (its caller gave up)");
        (Level::Debug, msg)
    } else {
        (Level::Error, format!("replying to {what}: {error}"))
    }
}

impl<L: Log> Log for ReplyLog<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if record.target().starts_with("fuser::reply") {
            let text = record.args().to_string();
            if let Some(error) = text.strip_prefix(FUSER_REPLY_FAILED) {
                let (level, message) = describe_failed_reply(error, current());
                let meta = Metadata::builder().level(level).target("cidfs::fuse").build();
                if self.inner.enabled(&meta) {
                    self.inner.log(
                        &Record::builder().metadata(meta).args(format_args!("{message}")).module_path(None).build(),
                    );
                }
                return;
            }
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn scopes_nest_and_travel_between_threads() {
        assert_eq!(current(), None);
        let outer = Scope::enter("read", 7);
        {
            let _inner = Scope::enter("getattr", 8);
            assert_eq!(current(), Some(("getattr", 8)));
        }
        assert_eq!(current(), Some(("read", 7)));
        let taken = current();
        let seen = std::thread::spawn(move || {
            let _s = Scope::restore(taken);
            current()
        })
        .join()
        .unwrap();
        assert_eq!(seen, Some(("read", 7)));
        drop(outer);
        assert_eq!(current(), None);
    }

    #[test]
    fn an_interrupted_request_is_debug_and_other_failures_are_errors() {
        let (level, msg) = describe_failed_reply("No such file or directory (os error 2)", Some(("read", 42)));
        assert_eq!(level, Level::Debug);
        assert!(msg.contains("read of inode 42") && msg.contains("interrupted"), "{msg}");
        let (level, msg) = describe_failed_reply("Invalid argument (os error 22)", Some(("write", 3)));
        assert_eq!(level, Level::Error);
        assert!(msg.contains("write of inode 3") && msg.contains("Invalid argument"), "{msg}");
    }

    /// Records what reaches it.
    #[derive(Default, Clone)]
    struct Capture(Arc<Mutex<Vec<(Level, String, String)>>>);

    impl Log for Capture {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, r: &Record) {
            self.0.lock().unwrap().push((r.level(), r.target().to_string(), r.args().to_string()));
        }
        fn flush(&self) {}
    }

    #[test]
    fn fusers_line_is_rewritten_with_the_operation_and_others_pass_through() {
        let capture = Capture::default();
        let log = ReplyLog::new(capture.clone());
        let _op = Scope::enter("lookup", 1);
        let fuser_line = format_args!("Failed to send FUSE reply: No such file or directory (os error 2)");
        log.log(&Record::builder().level(Level::Error).target("fuser::reply").args(fuser_line).build());
        log.log(&Record::builder().level(Level::Warn).target("cidfs::x").args(format_args!("other")).build());
        let seen = capture.0.lock().unwrap().clone();
        assert_eq!(seen[0].0, Level::Debug);
        assert_eq!(seen[0].1, "cidfs::fuse");
        assert!(seen[0].2.contains("lookup of inode 1"), "{}", seen[0].2);
        assert_eq!(seen[1], (Level::Warn, "cidfs::x".to_string(), "other".to_string()));
    }
}
