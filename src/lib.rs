//! sugar-sessions: SugarCRM REST API OAuth2 sessions for many named profiles.
//!
//! Layers (see DESIGN.md in the shared folder): `config` (profiles file), `sugar` (HTTP client),
//! `session` (what a session is and the rules, pure), `store` (token cache on disk), `password`
//! (non-interactive password sources), `engine` (runs operations: bounded concurrency,
//! persistence), `app` (the screen's pure state machine), `ui` (terminal and view), `cli` (shell
//! commands), `exit` (exit statuses, shared by the front ends), `emulator` (an independent Sugar
//! server), `text` (text from outside made safe for a terminal).

pub mod app;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod exit;
pub mod guard;
pub mod identity;
pub mod logging;
pub mod outcome;
pub mod runtime;
pub mod secret;
pub mod session;
pub mod store;
pub mod sugar;
pub mod text;
pub mod tui;
pub mod ui;
