//! The HTTP client for Sugar's REST API: login, refresh, logout, me, ping, server info.
//!
//! Every answer, and every way of not getting one, maps to a typed outcome whose message names the
//! profile, the HTTP status, Sugar's `error` label and `error_message`, and a hint where one helps.
//! Requests follow no redirects, read at most [`MAX_BODY`] bytes, and carry a connect timeout and a
//! total timeout. No message ever contains a password or a token.
//!
//! `error`: what went wrong and what a person can do about it; `client`: the requests;
//! `parse`: Sugar's answers read into typed values; `tls`: server certificates checked against the
//! system's CAs, read at the first need.

mod client;
mod error;
mod parse;
mod tls;

pub use client::{
    Call, Client, MAX_API_BODY, MAX_BODY, NetSettings, POOL_IDLE_PER_HOST, RawAnswer,
    install_crypto_provider,
};
pub use error::{CertProblem, ErrorKind, SOURCE_PASSWORD_HINT, SugarError, TYPED_PASSWORD_HINT};
pub use parse::{Grant, MAX_LIFETIME_S, Me, ServerInfo, parse_grant, parse_grant_answer};
