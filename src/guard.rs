//! The platform guard: profiles whose logins would end other sessions.
//!
//! Sugar keeps one session per user and platform. A login on `base` ends the user's browser
//! session, and two profiles with the same instance, user and platform end each other's sessions,
//! whatever their OAuth2 client ids (profiles with the very same identity, client id included,
//! share one session in the cache instead, and do not end each other's).

use crate::config::Profile;
use crate::identity::SessionKey;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// What the guard reads of a profile: a resolved [`Profile`], or one read from the profiles'
/// snapshot without being built (`list`).
pub trait Guarded {
    fn name(&self) -> &str;
    /// The URL as `url::Url` writes it.
    fn url(&self) -> &str;
    fn username(&self) -> &str;
    fn platform(&self) -> &str;
    fn client_id(&self) -> &str;
    /// A profile made for `sudo` (`NAME>USER`): the guard leaves it out.
    fn is_impersonation(&self) -> bool;
}

impl Guarded for Profile {
    fn name(&self) -> &str {
        &self.name
    }
    fn url(&self) -> &str {
        self.url.as_str()
    }
    fn username(&self) -> &str {
        &self.username
    }
    fn platform(&self) -> &str {
        &self.platform
    }
    fn client_id(&self) -> &str {
        &self.client_id
    }
    fn is_impersonation(&self) -> bool {
        Profile::is_impersonation(self)
    }
}

impl<T: Guarded + ?Sized> Guarded for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn url(&self) -> &str {
        (**self).url()
    }
    fn username(&self) -> &str {
        (**self).username()
    }
    fn platform(&self) -> &str {
        (**self).platform()
    }
    fn client_id(&self) -> &str {
        (**self).client_id()
    }
    fn is_impersonation(&self) -> bool {
        (**self).is_impersonation()
    }
}

/// The session a profile that is not an impersonation logs in to (as [`Profile::session_key`]).
fn session_key(p: &impl Guarded) -> SessionKey {
    SessionKey::new(p.url(), p.username(), p.platform(), p.client_id())
}

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
    pub fn message(&self, p: &impl Guarded) -> String {
        match self {
            Warning::BasePlatform => format!(
                "platform {}: a login here logs {} out of Sugar's web UI; give the profile a platform of its own",
                p.platform(),
                p.username()
            ),
            Warning::SharedPlatform { others } => format!(
                "{} also log{} in as {} on this instance and platform {}: each login ends the other's session; give each its own platform",
                others.join(", "),
                if others.len() == 1 { "s" } else { "" },
                p.username(),
                p.platform()
            ),
        }
    }
}

/// The warnings of every profile that has any, by profile name. One pass groups the profiles by
/// instance, user and platform; only the few groups of more than one are looked at again (at
/// 10,000 profiles this was a tenth of `list`'s time when every profile was looked up twice).
pub fn warnings<P: Guarded>(profiles: &[P]) -> HashMap<String, Vec<Warning>> {
    let own: Vec<&P> = profiles.iter().filter(|p| !p.is_impersonation()).collect();
    // Each profile's group, by number. The table holds (a profile of the group, the group): no
    // copy of any name, and a sixth of the memory of a map keyed by the names (1,000 profiles
    // that share nothing took 150 KB and as many page faults as the rest of `list`).
    let state = foldhash::fast::RandomState::default();
    let hash = |p: &P| group_hash(&state, p);
    let mut ids: HashTable<(usize, usize)> = HashTable::with_capacity(own.len());
    let mut sizes: Vec<usize> = Vec::with_capacity(own.len());
    let mut group_of: Vec<usize> = Vec::with_capacity(own.len());
    let mut out: HashMap<String, Vec<Warning>> = HashMap::new();
    for (i, p) in own.iter().enumerate() {
        let h = hash(p);
        let g = match ids.find(h, |&(first, _)| same_group(own[first], *p)) {
            Some(&(_, g)) => g,
            None => {
                let new = sizes.len();
                ids.insert_unique(h, (i, new), |&(first, _)| hash(own[first]));
                sizes.push(0);
                new
            }
        };
        sizes[g] += 1;
        group_of.push(g);
        // Sugar's own platform is `base`; a name that differs only in case is flagged too.
        if p.platform().eq_ignore_ascii_case("base") {
            out.insert(p.name().to_string(), vec![Warning::BasePlatform]);
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
            let key = session_key(p);
            let others: Vec<String> = group
                .iter()
                .map(|&j| own[j])
                .filter(|o| o.name() != p.name() && session_key(*o) != key)
                .map(|o| o.name().to_string())
                .collect();
            if !others.is_empty() {
                out.entry(p.name().to_string())
                    .or_default()
                    .push(Warning::SharedPlatform { others });
            }
        }
    }
    out
}

/// The instance of a profile as the guard compares it: its URL without the trailing slashes.
fn instance(p: &impl Guarded) -> &str {
    p.url().trim_end_matches('/')
}

/// Whether two profiles are one user on one platform of one instance for Sugar: instance and
/// user in any ASCII letter case, the platform as it is.
fn same_group(a: &impl Guarded, b: &impl Guarded) -> bool {
    instance(a).eq_ignore_ascii_case(instance(b))
        && a.username().eq_ignore_ascii_case(b.username())
        && a.platform() == b.platform()
}

/// A hash that agrees with [`same_group`]: instance and user lowered (a piece at a time, with no
/// copy of either), each part ended by a byte no text holds.
fn group_hash(state: &impl BuildHasher, p: &impl Guarded) -> u64 {
    let mut h = state.build_hasher();
    for text in [instance(p), p.username()] {
        let mut piece = [0u8; 64];
        for chunk in text.as_bytes().chunks(piece.len()) {
            let lowered = &mut piece[..chunk.len()];
            lowered.copy_from_slice(chunk);
            lowered.make_ascii_lowercase();
            h.write(lowered);
        }
        h.write_u8(0xFF);
    }
    h.write(p.platform().as_bytes());
    h.finish()
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
             [profiles.scribe]\nurl = \"https://c.example\"\nusername = \"bob\"\nplatform = \"SCRIBE\"\n\
             [profiles.long1]\nurl = \"https://a-host-name-longer-than-one-piece-of-the-hash.example/Sugar/CRM\"\nusername = \"ann\"\n\
             [profiles.long2]\nurl = \"https://a-host-name-longer-than-one-piece-of-the-hash.example/sugar/crm/\"\nusername = \"ANN\"\n\
             [profiles.case]\nurl = \"https://c.example\"\nusername = \"bob\"\nplatform = \"scribe\"\n",
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
        // Letter case counts in neither the URL (past the hash's first piece) nor the user; it
        // does in the platform (`SCRIBE` and `scribe` are two for Sugar).
        assert_eq!(w["long1"], shared(&["long2"]));
        assert_eq!(w["long2"], shared(&["long1"]));
        assert!(!w.contains_key("case"));
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
