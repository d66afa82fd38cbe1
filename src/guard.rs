//! The platform guard: profiles whose logins would end other sessions.
//!
//! Sugar keeps one session per user and platform. A login on `base` ends the user's browser
//! session, and two profiles with the same instance, user and platform end each other's sessions,
//! whatever their OAuth2 client ids (profiles with the very same identity, client id included,
//! share one session in the cache instead, and do not end each other's).

use crate::config::Profile;
use std::borrow::{Borrow, Cow};
use std::collections::HashMap;

/// Why logging in on this profile ends another session, if it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The profile logs in on platform `base`, the web UI's platform (in any letter case: the guard
    /// would rather warn once too often).
    BasePlatform,
    /// Other profiles log in as the same user on the same instance and platform.
    SharedPlatform { others: Vec<String> },
}

impl Warning {
    /// A sentence for people, about the given profile.
    pub fn message(&self, p: &Profile) -> String {
        match self {
            Warning::BasePlatform => format!(
                "platform {}: a login here logs {} out of Sugar's web UI; give the profile a platform of its own",
                p.platform, p.username
            ),
            Warning::SharedPlatform { others } => format!(
                "{} also log{} in as {} on this instance and platform {}: each login ends the other's session; give each its own platform",
                others.join(", "),
                if others.len() == 1 { "s" } else { "" },
                p.username,
                p.platform
            ),
        }
    }
}

/// The warnings of every profile that has any, by profile name. One pass groups the profiles by
/// instance, user and platform; only the few groups of more than one are looked at again (at
/// 10,000 profiles this was a tenth of `list`'s time when every profile was looked up twice).
pub fn warnings<P: Borrow<Profile>>(profiles: &[P]) -> HashMap<String, Vec<Warning>> {
    let own: Vec<&Profile> = profiles
        .iter()
        .map(Borrow::borrow)
        .filter(|p: &&Profile| !p.is_impersonation())
        .collect();
    // Names are lowered only when they have capitals (most have none: no copy of each).
    fn lower(s: &str) -> Cow<'_, str> {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    }
    // Each profile's group (instance, user, platform), by number: thousands of profiles that
    // share nothing make no list each.
    let mut ids: HashMap<(Cow<str>, Cow<str>, &str), usize> = HashMap::with_capacity(own.len());
    let mut sizes: Vec<usize> = Vec::with_capacity(own.len());
    let mut group_of: Vec<usize> = Vec::with_capacity(own.len());
    let mut out: HashMap<String, Vec<Warning>> = HashMap::new();
    for p in &own {
        let instance = lower(p.url.as_str().trim_end_matches('/'));
        let new = sizes.len();
        let g = *ids
            .entry((instance, lower(&p.username), p.platform.as_str()))
            .or_insert(new);
        if g == new {
            sizes.push(0);
        }
        sizes[g] += 1;
        group_of.push(g);
        // Sugar's own platform is `base`; a name that differs only in case is flagged too.
        if p.platform.eq_ignore_ascii_case("base") {
            out.insert(p.name.clone(), vec![Warning::BasePlatform]);
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, &g) in group_of.iter().enumerate() {
        if sizes[g] > 1 {
            groups.entry(g).or_default().push(i);
        }
    }
    for group in groups.values() {
        for &i in group {
            let p = own[i];
            let key = p.session_key();
            let others: Vec<String> = group
                .iter()
                .map(|&j| own[j])
                .filter(|o| o.name != p.name && o.session_key() != key)
                .map(|o| o.name.clone())
                .collect();
            if !others.is_empty() {
                out.entry(p.name.clone())
                    .or_default()
                    .push(Warning::SharedPlatform { others });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn profiles(text: &str) -> Vec<Profile> {
        crate::config::parse(text, Path::new("t.toml"))
            .unwrap()
            .profiles
            .iter()
            .map(|p| Profile::clone(p))
            .collect()
    }

    #[test]
    fn base_and_shared_platforms_are_flagged() {
        let ps = profiles(
            "[profiles.web]\nurl = \"https://a.example\"\nusername = \"will\"\nplatform = \"base\"\n\
             [profiles.one]\nurl = \"https://a.example\"\nusername = \"Sync\"\n\
             [profiles.two]\nurl = \"https://a.example/\"\nusername = \"sync\"\n\
             [profiles.twin]\nurl = \"https://A.example\"\nusername = \"sync\"\n\
             [profiles.app]\nurl = \"https://a.example\"\nusername = \"sync\"\nclient_id = \"app\"\n\
             [profiles.own]\nurl = \"https://a.example\"\nusername = \"sync\"\nplatform = \"own\"\n\
             [profiles.other]\nurl = \"https://b.example\"\nusername = \"sync\"\n\
             [profiles.shout]\nurl = \"https://c.example\"\nusername = \"ann\"\nplatform = \"BASE\"\n\
             [profiles.scribe]\nurl = \"https://c.example\"\nusername = \"bob\"\nplatform = \"SCRIBE\"\n",
        );
        let w = warnings(&ps);
        assert_eq!(w["web"], [Warning::BasePlatform]);
        assert_eq!(w["shout"], [Warning::BasePlatform]);
        assert!(!w.contains_key("scribe"));
        assert!(w["shout"][0].message(&ps[7]).starts_with("platform BASE: "));
        // `two` and `twin` are one identity: they share one session, and do not end each other's;
        // `app` logs in through another client: still the same user and platform for Sugar.
        let shared = |names: &[&str]| {
            vec![Warning::SharedPlatform {
                others: names.iter().map(|n| n.to_string()).collect(),
            }]
        };
        assert_eq!(w["one"], shared(&["two", "twin", "app"]));
        assert_eq!(w["two"], shared(&["one", "app"]));
        assert_eq!(w["twin"], shared(&["one", "app"]));
        assert_eq!(w["app"], shared(&["one", "two", "twin"]));
        assert!(!w.contains_key("own") && !w.contains_key("other"));
        assert_eq!(
            w["one"][0].message(&ps[1]),
            "two, twin, app also log in as Sync on this instance and platform custom_api: each login ends the other's session; give each its own platform"
        );
        assert!(
            w["web"][0]
                .message(&ps[0])
                .contains("logs will out of Sugar's web UI")
        );
    }
}
