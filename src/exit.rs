//! Exit statuses (documented in README.md), in a module of their own so that no two front ends
//! import each other. The screen also ends with 128 + N on signal N (143 SIGTERM, 129 SIGHUP or a
//! terminal that went away, 130 SIGINT): see [`crate::tui::Ending`].

/// Every profile succeeded.
pub const OK: i32 = 0;
/// At least one profile failed.
pub const FAILED: i32 = 1;
/// Bad usage, an unknown profile name, or a bad profiles file: nothing was done.
pub const USAGE: i32 = 2;
/// `check` only (a monitoring plugin: 0 OK, 1 WARNING, 2 CRITICAL): the check could not be made
/// (bad arguments, a bad profiles file, an unreadable cache).
pub const UNKNOWN: i32 = 3;
/// `token` only: a login is needed and no non-interactive password source can provide it.
pub const NEEDS_LOGIN: i32 = 4;
/// Ctrl-C (SIGINT) ended a command.
pub const INTERRUPTED: i32 = 130;
/// A panic (Rust's own status for one); the screen, if it was up, was restored first.
pub const PANIC: i32 = 101;
