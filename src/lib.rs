//! sugar-sessions: SugarCRM REST API OAuth2 sessions for many named profiles.
//!
//! The map of the code is ARCHITECTURE.md: the core (`session`, `identity`, `outcome`, `guard`),
//! `config`, `sugar` (HTTP client), `store` (token cache), `runtime` (runs work), the screen
//! (`app`, `ui`, `tui`), the shell commands (`cli`), `exit`, and `emulator` (an independent Sugar
//! server); `secret`, `text` and `logging` serve them all.

pub mod app;
pub mod argv;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod exit;
pub mod guard;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod outcome;
pub mod runtime;
pub mod secret;
pub mod serve;
pub mod session;
pub mod store;
pub mod sugar;
pub mod text;
pub mod time_serde;
pub mod tui;
pub mod ui;
