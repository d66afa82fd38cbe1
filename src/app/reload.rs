//! The profiles file changed while the screen runs: the rows follow the file, and what the screen
//! knows of each profile that stayed (its session, its request in flight, its last result, its
//! selection) stays with it.

use super::Command;
use super::model::{Mode, Model};
use super::row::Phase;
use crate::config::Profiles;
use crate::session::Cache;
use std::collections::HashMap;

impl Model {
    /// Takes the profiles of the file as it now reads, and the token cache as it is:
    /// - a profile that stayed (the same name and identity) keeps everything the screen knows;
    /// - a new one appears, with its session as the cache has it;
    /// - a removed one goes (its session stays in the cache);
    /// - one whose identity changed (url, user, platform, client) is shown with the session of
    ///   its new identity, and the status line says its old session is no longer its own.
    ///
    /// The view (filter, sort, cursor, details, help) stays. A prompt or a question about a
    /// profile that went or changed is put away, and a request still queued for one is withdrawn
    /// (the commands returned): it would go to an instance the file no longer names. The status
    /// line says what changed.
    pub fn apply_profiles(&mut self, profiles: &Profiles, cache: &Cache) -> Vec<Command> {
        let new = Model::new(profiles, self.source.clone(), self.options, self.clock);
        let mut old = std::mem::replace(self, new);
        self.size = old.size;
        self.sort = old.sort;
        self.reverse = old.reverse;
        self.details = old.details;
        self.filter = std::mem::take(&mut old.filter);
        // A screen closing stays closing (no refresh starts after an edit read meanwhile).
        self.quitting = old.quitting;

        // Old row index -> new row index, for the profiles (and impersonations) that stayed.
        let mut kept: HashMap<usize, usize> = HashMap::new();
        let (mut added, mut changed) = (0usize, Vec::new());
        for i in 0..self.rows.len() {
            let name = self.rows[i].profile.name.clone();
            match old.by_name.get(&name) {
                Some(&o) if old.rows[o].key == self.rows[i].key => {
                    kept.insert(o, i);
                }
                Some(_) => changed.push(name),
                None => added += 1,
            }
        }
        // Impersonations go with the profile they go through.
        for o in 0..old.rows.len() {
            let Some((parent, user)) = old.rows[o].sudo.clone() else {
                continue;
            };
            if let Some(&p) = kept.get(&parent) {
                let i = self.sudo_row(p, &user);
                kept.insert(o, i);
            }
        }
        let removed = old
            .rows
            .iter()
            .filter(|r| !r.is_sudo() && !self.by_name.contains_key(&r.profile.name))
            .count();
        for (&o, &i) in &kept {
            let from = &mut old.rows[o];
            let (entry, flight, last, last_error, recent, check) = (
                std::mem::take(&mut from.entry),
                from.flight.take(),
                from.last.take(),
                from.last_error.take(),
                std::mem::take(&mut from.recent),
                from.check.take(),
            );
            let (unverified, guard_confirmed) = (from.unverified, from.guard_confirmed);
            self.change_row(i, false, |r| {
                r.entry = entry;
                r.flight = flight;
                r.last = last;
                r.last_error = last_error;
                r.recent = recent;
                r.check = check;
                r.unverified = unverified;
                r.guard_confirmed = guard_confirmed;
            });
            if old.selected[o] && !self.rows[i].hidden {
                self.selected[i] = true;
                self.selected_count += 1;
            }
        }
        let withdraw: Vec<Command> = old
            .rows
            .iter()
            .enumerate()
            .filter(|(o, r)| {
                !kept.contains_key(o)
                    && r.flight
                        .is_some_and(|f| f.phase == Phase::Queued && !f.detached)
            })
            .map(|(_, r)| Command::Cancel {
                name: r.profile.name.clone(),
            })
            .collect();
        // Checks at start still on their way for profiles that went are not waited for.
        let lost_checks = old
            .rows
            .iter()
            .enumerate()
            .filter(|(o, r)| !kept.contains_key(o) && r.flight.is_some_and(|f| f.background))
            .count();
        self.verifying = old.verifying.saturating_sub(lost_checks);
        (
            self.verify_failed,
            self.verify_skewed,
            self.verify_withdrawn,
        ) = (old.verify_failed, old.verify_skewed, old.verify_withdrawn);
        // Password prompts waiting, for the profiles that stayed.
        self.prompts = old
            .prompts
            .iter()
            .filter_map(|o| kept.get(o).copied())
            .collect();
        // The prompt open is for the same profile still (not merely for none, as when the one
        // profile asked for went); a read-only screen asks for no password at all.
        if self.options.read_only {
            self.prompts.clear();
        }
        let front_kept = old
            .prompts
            .front()
            .and_then(|o| kept.get(o))
            .is_some_and(|i| self.prompts.front() == Some(i));
        self.mode = match std::mem::replace(&mut old.mode, Mode::Normal) {
            Mode::Password(typed) if front_kept => Mode::Password(typed),
            Mode::User { row, text } if kept.contains_key(&row) && !self.options.read_only => {
                Mode::User {
                    row: kept[&row],
                    text,
                }
            }
            // A question names the rows it acts on: asked again if still wanted.
            Mode::Password(_) | Mode::User { .. } | Mode::Confirm(_) => Mode::Normal,
            other => other,
        };
        if matches!(self.mode, Mode::Normal) && !self.prompts.is_empty() {
            self.mode = Mode::Password(super::input::Typed::default());
        }
        self.apply_cache(cache);
        let cursor_name = old
            .visible
            .get(old.cursor)
            .map(|&o| old.rows[o].profile.name.clone());
        self.reorder();
        let at = cursor_name.and_then(|n| self.by_name.get(&n).copied());
        // (`Model::new` left no file error; `follow` marked the screen to draw.)
        self.follow(at);

        let mut said = Vec::new();
        if added > 0 {
            said.push(format!("{added} new"));
        }
        if removed > 0 {
            said.push(format!(
                "{removed} removed (their sessions stay in the token cache)"
            ));
        }
        let mut text = if said.is_empty() {
            "profiles file reloaded".to_string()
        } else {
            format!("profiles file reloaded: {}", said.join(", "))
        };
        if !changed.is_empty() {
            text.push_str(&format!(
                "; {} changed instance, user, platform or client: the old session is no longer its own",
                changed.join(", ")
            ));
        }
        self.say(text);
        withdraw
    }

    /// The profiles file was changed into one that cannot be used: the profiles stay as they
    /// were, and the located error shows in the status line until the file is fixed.
    pub fn profiles_broken(&mut self, error: String) {
        // What the status line said before the edit is older than the error.
        self.status = None;
        self.file_error = Some(error.replace('\n', "; "));
        self.dirty = true;
    }

    /// The profiles file's error, while its last edit cannot be used.
    pub fn file_error(&self) -> Option<&str> {
        self.file_error.as_deref()
    }
}
