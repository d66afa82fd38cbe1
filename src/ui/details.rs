//! The details pane: everything about the row under the cursor.

use super::{Theme, fit, width};
use crate::app::{Model, Phase, ResultKind, RowState};
use crate::config::PasswordSource;
use crate::session::{format_duration, remaining};
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Paragraph, Wrap};

fn label(text: &str) -> Span<'static> {
    Span::styled(
        format!("{text:<9} "),
        Style::new().add_modifier(Modifier::BOLD),
    )
}

/// Word-wraps `text` after a label, continuation lines indented under the text.
fn labelled(name: &str, text: &str, style: Style, cols: usize) -> Vec<Line<'static>> {
    const INDENT: usize = 10;
    let room = cols.saturating_sub(INDENT).max(10);
    let mut out: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let last = out.last_mut().expect("one line");
        let w = width(word);
        if !last.is_empty() && width(last) + 1 + w > room {
            out.push(String::new());
        }
        let last = out.last_mut().expect("one line");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(word);
    }
    out.into_iter()
        .enumerate()
        .map(|(k, l)| {
            let head = if k == 0 {
                label(name)
            } else {
                Span::raw(" ".repeat(INDENT))
            };
            Line::from(vec![head, Span::styled(l, style)])
        })
        .collect()
}

/// Where the profile's password comes from, without the password; short, to take one line.
fn password_source(source: &PasswordSource) -> String {
    match source {
        PasswordSource::Env(var) => format!("password_env {var}"),
        PasswordSource::Cmd(_) => "password_cmd".into(),
        PasswordSource::Plain(_) => "in the profiles file (password)".into(),
        PasswordSource::Keyring(entry) => format!(
            "OS keyring, account {}{}",
            entry.account,
            if entry.over_ssh {
                " (also over SSH)"
            } else {
                ""
            }
        ),
        PasswordSource::Prompt => "typed when asked".into(),
    }
}

pub(super) fn draw_details(
    model: &Model,
    now: DateTime<Utc>,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let Some(row) = model.current() else {
        frame.render_widget(theme.block().title(" details "), area);
        return;
    };
    let zone = model.options().zone;
    let dot = theme.dot();
    let p = &row.profile;
    let when = |t: DateTime<Utc>| zone.format(t, "%Y-%m-%d %H:%M:%S %:z");
    let cols = usize::from(area.width.saturating_sub(4));
    let mut lines: Vec<Line> = Vec::new();
    lines.push(Line::from(vec![label("URL"), Span::raw(p.rest_root())]));
    if row.insecure() {
        lines.extend(labelled(
            "Security",
            "INSECURE: the server's certificate is not checked (insecure = true); only for a throwaway test box",
            theme.error(),
            cols,
        ));
    }
    if row.plain_http {
        lines.extend(labelled(
            "Security",
            "plain HTTP to a host that is not loopback (allow_http = true): passwords and tokens cross the network unencrypted",
            theme.error(),
            cols,
        ));
    }
    let mut net = Vec::new();
    if let Some(ca) = &p.ca_cert {
        net.push(format!("ca_cert {}", ca.path.display()));
    }
    if let Some(proxy) = &p.proxy {
        net.push(format!("proxy {proxy}"));
    }
    if !net.is_empty() {
        lines.extend(labelled("Network", &net.join(dot), Style::new(), cols));
    }
    let mut who = format!(
        "{}{dot}platform {}{dot}client {}",
        p.username, p.platform, p.client_id
    );
    if !p.tags.is_empty() {
        who.push_str(&format!("{dot}tags {}", p.tags.join(" ")));
    }
    lines.push(Line::from(vec![label("User"), Span::raw(who)]));
    if !p.is_impersonation() {
        lines.extend(labelled(
            "Password",
            &password_source(&p.password),
            Style::new(),
            cols,
        ));
    }
    if let Some((parent, user)) = &row.sudo {
        lines.extend(labelled(
            "Sudo",
            &format!(
                "impersonating {user} through {}'s admin session; no refresh token: it ends when its access token does (o logs it out)",
                model.rows()[*parent].name()
            ),
            Style::new(),
            cols,
        ));
    }
    for warning in &row.warnings {
        lines.extend(labelled("Warning", warning, theme.warning(), cols));
    }
    match &row.entry.session {
        Some(s) => {
            let access = if row.superseded() {
                format!(
                    "no longer accepted by Sugar (it would have lasted until {})",
                    when(s.expires_at)
                )
            } else if s.access_valid(now) {
                format!(
                    "until {} ({} left)",
                    when(s.expires_at),
                    format_duration(remaining(s.expires_at, now))
                )
            } else {
                format!("expired at {}", when(s.expires_at))
            };
            lines.push(Line::from(vec![
                label("Access"),
                Span::styled(access, theme.state(row.state())),
            ]));
            let refresh = match (s.refresh_token.is_some(), s.refresh_expires_at) {
                (true, Some(at)) if s.refresh_valid(now) => {
                    let mut text = format!(
                        "until {} ({} left)",
                        when(at),
                        format_duration(remaining(at, now))
                    );
                    if let Some(end) = s.hard_end {
                        text.push_str(&format!(
                            "; the session ends at {}: refreshing no longer extends it (Sugar's max_session_lifetime), a login is needed then",
                            when(end)
                        ));
                    }
                    text
                }
                (true, Some(at)) => format!("expired at {}", when(at)),
                _ => {
                    "no refresh token: a login is needed when the access token expires".to_string()
                }
            };
            if !row.is_sudo() {
                lines.extend(labelled("Refresh", &refresh, Style::new(), cols));
            }
            // Tokens only masked: the first and last four characters; on a read-only screen, not
            // at all.
            if !model.options().read_only {
                let ell = theme.ellipsis().to_string();
                let mask = |t: &crate::secret::Secret| t.masked().replace('…', &ell);
                let mut tokens = format!("access {}", mask(&s.access_token));
                if let Some(r) = &s.refresh_token {
                    tokens.push_str(&format!("{dot}refresh {}", mask(r)));
                }
                if let Some(d) = &s.download_token {
                    tokens.push_str(&format!("{dot}download {}", mask(d)));
                }
                lines.push(Line::from(vec![label("Tokens"), Span::raw(tokens)]));
            }
        }
        None => lines.push(Line::from(vec![
            label("Session"),
            Span::raw(if model.options().read_only {
                "none (read-only: log in elsewhere)"
            } else {
                "none: l logs in"
            }),
        ])),
    }
    match (&row.check, row.state()) {
        (_, RowState::Unverified) => lines.push(Line::from(vec![
            label("Check"),
            Span::styled(
                "cached session, not yet confirmed by the server: checking",
                theme.state(RowState::Unverified),
            ),
        ])),
        (Some(c), _) => {
            lines.extend(labelled(
                "Check",
                &format!("{} (at {})", c.summary(), zone.format(c.at, "%H:%M:%S")),
                Style::new(),
                cols,
            ));
            if let Some(w) = c.skew_warning() {
                lines.extend(labelled("Clock", &w, theme.warning(), cols));
            }
        }
        (None, _) => {}
    }
    if let Some(f) = row.flight {
        let what = match (f.detached, f.phase) {
            (true, _) => "cancelled; the answer will still be stored when it arrives",
            (false, Phase::Queued) => "queued (waiting for a free connection)",
            (false, Phase::Sent) => "sent, waiting for the answer",
        };
        lines.push(Line::from(vec![
            label("Request"),
            Span::styled(
                format!(
                    "{} {what} (since {})",
                    f.op,
                    zone.format(f.since, "%H:%M:%S")
                ),
                theme.state(RowState::LoggingIn),
            ),
        ]));
    }
    if let Some((text, hint)) = row.error_text() {
        lines.extend(labelled("Error", &text, theme.error(), cols));
        if let Some(hint) = hint {
            lines.extend(labelled("Hint", &hint, Style::new(), cols));
        }
    }
    if let Some(last) = &row.last {
        let latency = last
            .latency_ms
            .map(|ms| format!(", {ms} ms"))
            .unwrap_or_default();
        let what = match last.kind {
            ResultKind::Ok => "ok",
            ResultKind::Failed => "failed",
            ResultKind::Withdrawn => "withdrawn",
        };
        lines.push(Line::from(vec![
            label("Last"),
            Span::raw(format!(
                "{} {what} at {}{latency}",
                last.op,
                zone.format(last.at, "%H:%M:%S")
            )),
        ]));
    }
    if !row.recent.is_empty() {
        lines.push(Line::from(label("Requests")));
        for r in row.recent.iter().rev() {
            let status = r
                .status
                .map_or_else(|| theme.dash().to_string(), |s| s.to_string());
            let style = match r.status {
                Some(s) if s < 400 => Style::new(),
                _ => theme.error(),
            };
            lines.push(Line::from(vec![
                Span::raw(format!("{:<10}", "")),
                Span::raw(format!(
                    "{}  {:<5}{:<22}",
                    zone.format(r.at, "%H:%M:%S"),
                    r.method,
                    r.path
                )),
                Span::styled(format!("{status:>4}"), style),
                Span::raw(format!("  {:>6} ms", r.latency_ms)),
            ]));
        }
    }
    let title = format!(
        " {} ",
        fit(
            row.name(),
            usize::from(area.width.saturating_sub(6)),
            theme.ellipsis()
        )
    );
    let block = theme.text_block().title(Span::styled(title, theme.bold()));
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}
