//! Starting and cancelling requests: which rows, what is refused, what is asked first.

use super::Command;
use super::input::Typed;
use super::model::{Mode, Model};
use super::row::{Flight, Phase};
use crate::config::PasswordSource;
use crate::secret::Secret;
use crate::session::{Op, State};

/// A pending confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    pub op: Op,
    /// Row indices.
    pub(super) rows: Vec<usize>,
    /// Names to show (all of them; the view cuts).
    pub names: Vec<String>,
    pub prod: usize,
    /// A login on profiles the platform guard warns of: `(name, warning)` for each warning.
    pub warnings: Vec<(String, String)>,
}

impl Model {
    /// The rows an action applies to: the selected rows the filter shows, else the cursor's row.
    pub(super) fn targets(&self) -> Vec<usize> {
        if self.selected_count > 0 {
            self.visible
                .iter()
                .copied()
                .filter(|&i| self.selected[i])
                .collect()
        } else {
            self.visible.get(self.cursor).copied().into_iter().collect()
        }
    }

    /// Why a refresh cannot be sent for row `i`, if it cannot.
    pub(super) fn refresh_refusal(&self, i: usize) -> Option<&'static str> {
        let row = &self.rows[i];
        if row.busy() {
            return Some("busy");
        }
        match &row.entry.session {
            _ if row.is_sudo() => {
                Some("an impersonation has no refresh token: u on its profile makes a new one")
            }
            None => Some("no session: log in first"),
            Some(s) if !s.refresh_valid(self.clock) => Some("no valid refresh token: log in again"),
            Some(_) => None,
        }
    }

    /// Why a live check cannot be sent for row `i`, if it cannot.
    pub(super) fn check_refusal(&self, i: usize) -> Option<&'static str> {
        let row = &self.rows[i];
        if row.busy() {
            return Some("a request is already in flight");
        }
        match &row.entry.session {
            Some(s) if s.access_valid(self.clock) => None,
            _ => Some("no active session to check: log in first"),
        }
    }

    /// Why row `i`'s session cannot impersonate another user, if it cannot.
    pub(super) fn sudo_refusal(&self, i: usize) -> Option<String> {
        let row = &self.rows[i];
        let name = row.name();
        if let Some((parent, _)) = &row.sudo {
            return Some(format!(
                "{name} is an impersonation: u on {} makes another",
                self.rows[*parent].name()
            ));
        }
        if row.busy() {
            return Some(format!("{name}: a request is already in flight"));
        }
        if row.entry.usable_session(self.clock).is_none() || row.superseded() {
            return Some(format!(
                "{name}: impersonating needs an active admin session: log in first"
            ));
        }
        match &row.check {
            Some(c) if !c.admin => Some(format!(
                "{name}: {} is not an admin (checked at {}): impersonating needs an admin session",
                c.user_name,
                self.options.zone.format(c.at, "%H:%M:%S")
            )),
            _ => None,
        }
    }

    /// Queues `op` for row `i`. With `reposition` false the visible order is left to the caller
    /// (one [`Model::resort`] after starting many).
    pub(super) fn start(
        &mut self,
        i: usize,
        op: Op,
        password: Option<Secret>,
        reposition: bool,
    ) -> Command {
        self.begin(i, op, false, reposition);
        Command::Start {
            name: self.rows[i].profile.name.clone(),
            profile: self.rows[i].profile.clone(),
            op,
            password,
            due: false,
        }
    }

    /// Marks row `i`'s request as queued.
    pub(super) fn begin(&mut self, i: usize, op: Op, background: bool, reposition: bool) {
        let since = self.clock;
        self.change_row(i, reposition, |r| {
            r.flight = Some(Flight {
                op,
                phase: Phase::Queued,
                since,
                detached: false,
                background,
            })
        });
    }
}

/// Starts `op` on the rows that allow it; asks first where that is due (unless `confirmed`).
pub(super) fn act(model: &mut Model, op: Op, rows: Vec<usize>, confirmed: bool) -> Vec<Command> {
    if model.options.read_only {
        // The keys are refused before this; nothing else may start a change on this screen.
        model.warn(format!("read-only screen: {} is refused", op.as_str()));
        return Vec::new();
    }
    if rows.is_empty() {
        if model.selected_count > 0 {
            model.warn(format!(
                "the filter hides all {} selected profiles",
                model.selected_count
            ));
        } else {
            model.warn("no profile here");
        }
        return Vec::new();
    }
    let mut ready = Vec::new();
    let mut skipped: Vec<(String, &'static str)> = Vec::new();
    for i in rows {
        let row = &model.rows[i];
        let refusal = if row.busy() {
            Some("a request is already in flight")
        } else {
            match op {
                Op::Login if row.is_sudo() => {
                    Some("an impersonation is renewed with u on its profile, not logged in")
                }
                Op::Login => None,
                Op::Refresh => model.refresh_refusal(i),
                Op::Logout if row.entry.session.is_none() => Some("not logged in"),
                Op::Logout => None,
                Op::Check | Op::Sudo | Op::Relogin => Some("not a bulk action"),
            }
        };
        match refusal {
            Some(why) => skipped.push((row.profile.name.clone(), why)),
            None => ready.push(i),
        }
    }
    if ready.is_empty() {
        let text = match skipped.as_slice() {
            [(name, why)] => format!("{name}: {why}"),
            _ => format!(
                "{op}: nothing to do for the {} chosen profiles ({})",
                skipped.len(),
                skipped[0].1
            ),
        };
        model.warn(text);
        return Vec::new();
    }
    let prod = ready.iter().filter(|&&i| model.rows[i].prod).count();
    // A login that would end another session (platform guard) is confirmed once per profile.
    let warnings: Vec<(String, String)> = if op == Op::Login && !confirmed {
        ready
            .iter()
            .map(|&i| &model.rows[i])
            .filter(|r| !r.guard_confirmed)
            .flat_map(|r| {
                r.warnings
                    .iter()
                    .map(|w| (r.profile.name.clone(), w.clone()))
            })
            .collect()
    } else {
        Vec::new()
    };
    if !warnings.is_empty() || (op == Op::Logout && !confirmed && (prod > 0 || ready.len() > 1)) {
        let names = ready
            .iter()
            .map(|&i| model.rows[i].profile.name.clone())
            .collect();
        model.mode = Mode::Confirm(Confirm {
            op,
            rows: ready,
            names,
            prod,
            warnings,
        });
        return Vec::new();
    }
    let mut cmds = Vec::new();
    let mut prompts = 0;
    for i in ready.iter().copied() {
        if op == Op::Login && model.rows[i].profile.password == PasswordSource::Prompt {
            model.prompts.push_back(i);
            prompts += 1;
        } else {
            cmds.push(model.start(i, op, None, false));
        }
    }
    if !cmds.is_empty() {
        model.resort();
    }
    let mut text = match cmds.len() {
        0 => String::new(),
        1 => format!("{}: {op} queued", model.rows[ready[0]].name()),
        n => format!("{op}: {n} requests queued"),
    };
    if !skipped.is_empty() {
        text.push_str(&format!(
            "{}{} skipped ({})",
            if text.is_empty() { "" } else { "; " },
            skipped.len(),
            skipped[0].1
        ));
    }
    if prompts > 0 && !matches!(model.mode, Mode::Password(_)) {
        model.mode = Mode::Password(Typed::default());
    }
    if !text.is_empty() {
        model.say(text);
    }
    cmds
}

pub(super) fn cancel(model: &mut Model) -> Vec<Command> {
    let mut cmds = Vec::new();
    let (mut withdrawn, mut detached) = (0, 0);
    for i in model.targets() {
        let Some(flight) = model.rows[i].flight.filter(|f| !f.detached) else {
            continue;
        };
        model.change_row(i, false, |r| {
            if let Some(f) = &mut r.flight {
                f.detached = true;
            }
        });
        match flight.phase {
            Phase::Queued => {
                withdrawn += 1;
                cmds.push(Command::Cancel {
                    name: model.rows[i].profile.name.clone(),
                });
            }
            Phase::Sent => detached += 1,
        }
    }
    if withdrawn + detached > 0 {
        model.resort();
    }
    match (withdrawn, detached) {
        (0, 0) => model.warn("nothing to cancel"),
        (w, 0) => model.say(format!("withdrawing {w} queued request(s)")),
        (w, d) => model.say(format!(
            "withdrawing {w} queued request(s); {d} already sent: not waiting for them, their answers will still be stored"
        )),
    }
    cmds
}

/// `v`: a live check of each target with an active session.
pub(super) fn check(model: &mut Model) -> Vec<Command> {
    let targets = model.targets();
    if targets.is_empty() {
        model.warn("no profile here");
        return Vec::new();
    }
    let mut cmds = Vec::new();
    let mut skipped: Vec<(usize, &'static str)> = Vec::new();
    for i in targets {
        match model.check_refusal(i) {
            Some(why) => skipped.push((i, why)),
            None => {
                model.begin(i, Op::Check, false, false);
                cmds.push(Command::Check {
                    name: model.rows[i].profile.name.clone(),
                    profile: model.rows[i].profile.clone(),
                });
            }
        }
    }
    if !cmds.is_empty() {
        model.resort();
    }
    let mut text = match cmds.as_slice() {
        [] => String::new(),
        [Command::Check { name, .. }] => format!("{name}: check queued"),
        more => format!("check: {} requests queued", more.len()),
    };
    match (skipped.as_slice(), cmds.is_empty()) {
        ([], _) => {}
        ([(i, why)], true) => text = format!("{}: {why}", model.rows[*i].name()),
        (s, true) => {
            text = format!(
                "check: nothing to do for the {} chosen profiles ({})",
                s.len(),
                s[0].1
            )
        }
        (s, false) => text.push_str(&format!("; {} skipped ({})", s.len(), s[0].1)),
    }
    if cmds.is_empty() {
        model.warn(text);
    } else {
        model.say(text);
    }
    cmds
}

/// At start: checks every cached active session in the background; they show as unverified
/// until their check returns.
pub(super) fn verify(model: &mut Model) -> Vec<Command> {
    if !model.keeps_alive() {
        // Read-only without --keep-alive: a check may end a session Sugar refuses; the rows show
        // what the cache says.
        model.noop = true;
        return Vec::new();
    }
    let now = model.clock;
    let mut cmds = Vec::new();
    for i in 0..model.rows.len() {
        let r = &model.rows[i];
        if r.hidden || r.busy() || r.entry.state(now) != State::Active {
            continue;
        }
        model.change_row(i, false, |r| r.unverified = true);
        model.begin(i, Op::Check, true, false);
        cmds.push(Command::Check {
            name: model.rows[i].profile.name.clone(),
            profile: model.rows[i].profile.clone(),
        });
    }
    if cmds.is_empty() {
        model.noop = true;
        return cmds;
    }
    model.resort();
    model.verifying += cmds.len();
    model.say(format!(
        "checking {} cached session{} with the server",
        cmds.len(),
        if cmds.len() == 1 { "" } else { "s" }
    ));
    cmds
}
