//! The snapshot's tests: what a load through it gives, and every change it must see.

use super::super::{load as full_load, load_cached};
use super::*;
use std::os::unix::fs::PermissionsExt;

struct World {
    dir: tempfile::TempDir,
    state: PathBuf,
    profiles: PathBuf,
}

fn world(text: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let profiles = dir.path().join("profiles.toml");
    write(&profiles, text);
    World {
        dir,
        state,
        profiles,
    }
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl World {
    fn cached(&self) -> Profiles {
        load_cached(&self.profiles, Some(&self.state)).unwrap()
    }
    /// The error of a load through the snapshot (which must fail).
    fn error(&self) -> String {
        load_cached(&self.profiles, Some(&self.state))
            .unwrap_err()
            .to_string()
    }
    fn through_snapshot(&self) -> Option<Profiles> {
        load(&self.state, &self.profiles, None).map(|(p, rest)| {
            assert!(rest.is_none());
            p
        })
    }
    fn snapshot(&self) -> PathBuf {
        snapshot_path(&self.state, &self.profiles)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn shown(p: &Profiles) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        p.profiles, p.settings, p.files, p.dirs
    )
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

const RICH: &str = r#"
include = ["conf.d/*.toml", "team.toml"]

[defaults]
platform = "ops"
max_concurrency = 12
max_per_host = 3
columns = ["name", "state", "user", "token"]
password_env = "OPS_PW"

[profiles.acme]
url = "https://acme.example.com/sugar"
username = "integration"
tags = ["acme", "prod"]
timeout_s = 7
refresh_before_s = 120
check_interval_s = 60
proxy = "socks5h://127.0.0.1:1080"

[profiles.local]
url = "http://127.0.0.1:8080/x"
username = "admin"
password_cmd = "pass show local"
api = "v11_20"
client_id = "mine"
auto_refresh = false
relogin = false

[profiles.kr]
url = "https://kr.example.com"
username = "kim"
password_keyring = true
keyring_account = "kim@kr"
keyring_over_ssh = true

[profiles.ask]
url = "https://ask.example.com"
username = "asker"
password_keyring = false

[profiles.team-one]
tags = ["mine"]
"#;

fn rich() -> World {
    let w = world(RICH);
    write(&w.path("ca.pem"), &ca_pem());
    write(
        &w.path("conf.d/a.toml"),
        "[profiles.cat-a]\nurl = \"https://a.example.com\"\nusername = \"u\"\nca_cert = \"../ca.pem\"\n",
    );
    write(
        &w.path("team.toml"),
        "[defaults]\nusername = \"team\"\n[profiles.team-one]\nurl = \"https://t.example.com\"\n",
    );
    w
}

#[test]
fn a_snapshot_gives_what_the_full_load_gives() {
    let w = rich();
    let full = w.cached();
    assert!(w.snapshot().exists(), "a full load writes the snapshot");
    let snap = w.through_snapshot().expect("the snapshot is used");
    assert_eq!(shown(&snap), shown(&full));
    assert_eq!(shown(&w.cached()), shown(&full_load(&w.profiles).unwrap()));
    let mode = std::fs::metadata(w.snapshot())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Profiles of the file and of the catalogues, all there.
    let names: Vec<&str> = snap.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cat-a", "team-one", "acme", "local", "kr", "ask"]);
}

#[test]
fn one_profile_is_decoded_alone_and_an_unknown_name_gets_them_all() {
    let w = rich();
    let full = w.cached();
    let (one, rest) = load(&w.state, &w.profiles, Some("kr")).expect("the snapshot is used");
    // The rest names every profile of the file set, with its client id.
    let names = rest.unwrap().names().unwrap();
    let local = names.iter().find(|n| n.0 == "local").unwrap();
    assert_eq!((local.1.as_str(), local.2.as_str()), ("mine", "admin"));
    assert_eq!(names.len(), full.profiles.len());
    let kr = full.profiles.iter().find(|p| p.name == "kr").unwrap();
    assert_eq!(format!("{:?}", one.profiles), format!("{:?}", [kr]));
    assert_eq!(
        format!("{:?}", one.settings),
        format!("{:?}", full.settings)
    );
    // A catalogue's profile, with its checked ca_cert.
    let (one, _) = load(&w.state, &w.profiles, Some("cat-a")).unwrap();
    assert!(one.profiles[0].ca_cert.is_some());
    let (all, rest) = load(&w.state, &w.profiles, Some("nosuch")).unwrap();
    assert!(rest.is_none());
    assert_eq!(shown(&all), shown(&full));
}

#[test]
fn an_edit_that_keeps_the_size_and_the_times_is_seen() {
    let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"anna\"\n");
    w.cached();
    let before = std::fs::metadata(&w.profiles).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&w.profiles)
        .unwrap();
    std::fs::write(
        &w.profiles,
        "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"bert\"\n",
    )
    .unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(before.modified().unwrap())
            .set_accessed(before.accessed().unwrap()),
    )
    .unwrap();
    assert_eq!(w.cached().profiles[0].username, "bert");
}

#[test]
fn a_file_holding_a_secret_gets_no_snapshot() {
    for secret in [
        "password = \"hunter2-xyz\"",
        "client_secret = \"hunter2-xyz\"",
    ] {
        let w = world(&format!(
            "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n{secret}\n"
        ));
        let p = w.cached();
        assert_eq!(p.profiles.len(), 1);
        assert!(!w.snapshot().exists(), "{secret}: no snapshot");
        for entry in std::fs::read_dir(&w.state).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(7).any(|b| b == b"hunter2"));
        }
    }
}

#[test]
fn a_new_catalogue_in_a_glob_directory_is_read() {
    let w = rich();
    w.cached();
    write(
        &w.path("conf.d/b.toml"),
        "[profiles.cat-b]\nurl = \"https://b.example.com\"\nusername = \"u\"\n",
    );
    assert!(w.through_snapshot().is_none());
    assert!(w.cached().get("cat-b").is_some());
    std::fs::remove_file(w.path("conf.d/b.toml")).unwrap();
    assert!(w.cached().get("cat-b").is_none());
}

#[test]
fn a_catalogue_others_may_change_is_refused_again() {
    let w = rich();
    w.cached();
    let cat = w.path("conf.d/a.toml");
    std::fs::set_permissions(&cat, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = w.error();
    assert!(e.contains("others can change"), "{e}");
    std::fs::set_permissions(w.path("conf.d"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&cat, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = w.error();
    assert!(e.contains("writable by others"), "{e}");
}

#[test]
fn a_broken_ca_file_is_reported() {
    let w = rich();
    w.cached();
    write(&w.path("ca.pem"), "not a certificate\n");
    let e = w.error();
    assert!(e.contains("ca_cert"), "{e}");
}

#[test]
fn a_broken_profiles_file_is_reported_where_it_is_broken() {
    let w = rich();
    w.cached();
    write(
        &w.profiles,
        &RICH.replace("timeout_s = 7", "timeout_s = \"7\""),
    );
    let e = load_cached(&w.profiles, Some(&w.state)).unwrap_err();
    assert!(
        e.to_string().contains(":15:13: profiles.acme.timeout_s"),
        "{e}"
    );
}

#[test]
fn a_link_to_a_file_read_already_is_followed_again_when_it_moves() {
    let w = world("include = [\"cat/prod.toml\", \"conf.d/*.toml\"]\n");
    write(
        &w.path("cat/prod.toml"),
        "[profiles.prod]\nurl = \"https://p.example.com\"\nusername = \"u\"\n",
    );
    write(
        &w.path("cat/staging.toml"),
        "[profiles.staging]\nurl = \"https://s.example.com\"\nusername = \"u\"\n",
    );
    std::fs::create_dir(w.path("conf.d")).unwrap();
    std::os::unix::fs::symlink("../cat/prod.toml", w.path("conf.d/x.toml")).unwrap();
    assert!(w.cached().get("staging").is_none());
    std::fs::remove_file(w.path("conf.d/x.toml")).unwrap();
    std::os::unix::fs::symlink("../cat/staging.toml", w.path("conf.d/x.toml")).unwrap();
    assert!(w.cached().get("staging").is_some());
}

#[test]
fn a_ca_file_every_profile_overrides_is_still_checked() {
    let w = world(
        "[defaults]\nca_cert = \"corp.pem\"\n[profiles.a]\nurl = \"https://a.example.com\"\n\
         username = \"u\"\nca_cert = \"own.pem\"\n",
    );
    write(&w.path("corp.pem"), &ca_pem());
    write(&w.path("own.pem"), &ca_pem());
    w.cached();
    assert!(w.through_snapshot().is_some());
    write(&w.path("corp.pem"), "garbage\n");
    let e = w.error();
    assert!(e.contains("defaults.ca_cert"), "{e}");
}

#[test]
fn a_proxy_with_a_password_gets_no_snapshot() {
    let w = world(
        "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n\
         proxy = \"http://alice:hunter2-xyz@proxy.example.com:3128\"\n",
    );
    w.cached();
    assert!(!w.snapshot().exists());
}

/// A snapshot that still describes the files, but says something else of a profile: what
/// someone who could write to it would make.
fn forge(w: &World) {
    let bytes = std::fs::read(w.snapshot()).unwrap();
    let mut snap: Snapshot = postcard::from_bytes(&bytes).unwrap();
    let mut p: SnapProfile = postcard::from_bytes(snap.profiles[0].body).unwrap();
    p.url = "https://evil.example.net/".into();
    let body = postcard::to_allocvec(&p).unwrap();
    snap.profiles[0].body = &body;
    std::fs::write(w.snapshot(), postcard::to_allocvec(&snap).unwrap()).unwrap();
}

#[test]
fn an_entry_with_another_profiles_body_or_a_cut_or_padded_one_is_not_used() {
    let w = world(
        "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"anna\"\n\
         [profiles.b]\nurl = \"https://b.example.com\"\nusername = \"bert\"\n",
    );
    w.cached();
    let bytes = std::fs::read(w.snapshot()).unwrap();
    // `a`'s body made from `a`'s and `b`'s.
    type Body = dyn Fn(&[u8], &[u8]) -> Vec<u8>;
    let a = |make: &Body| {
        let mut snap: Snapshot = postcard::from_bytes(&bytes).unwrap();
        let body = make(snap.profiles[0].body, snap.profiles[1].body);
        snap.profiles[0].body = &body;
        std::fs::write(w.snapshot(), postcard::to_allocvec(&snap).unwrap()).unwrap();
        load(&w.state, &w.profiles, Some("a"))
    };
    // `a` in front of `b`'s body; `a`'s body cut short; `a`'s body with a byte more.
    assert!(a(&|_, b| b.to_vec()).is_none());
    assert!(a(&|a, _| a[..a.len() / 2].to_vec()).is_none());
    assert!(a(&|a, _| [a, &[0]].concat()).is_none());
    // Either way the full load answers, and writes a sound snapshot again.
    assert_eq!(w.cached().get("a").unwrap().username, "anna");
    let (one, rest) = load(&w.state, &w.profiles, Some("a")).unwrap();
    assert!(rest.is_some());
    assert_eq!(one.profiles[0].username, "anna");
}

#[test]
fn a_snapshot_others_may_change_is_not_trusted() {
    let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n");
    w.cached();
    forge(&w);
    // The forgery is read when the file is private (what makes the checks below the ones
    // that refuse it)...
    assert_eq!(
        w.cached().profiles[0].url.as_str(),
        "https://evil.example.net/"
    );
    // ...and not when others may read or change it, or its directory.
    std::fs::set_permissions(w.snapshot(), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        w.cached().profiles[0].url.as_str(),
        "https://a.example.com/"
    );
    forge(&w);
    std::fs::set_permissions(w.snapshot(), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        w.cached().profiles[0].url.as_str(),
        "https://a.example.com/"
    );
}

#[test]
fn a_damaged_snapshot_is_read_past() {
    let w = rich();
    let full = w.cached();
    let bytes = std::fs::read(w.snapshot()).unwrap();
    for damaged in [&b"garbage"[..], &bytes[..bytes.len() / 2], &[]] {
        std::fs::write(w.snapshot(), damaged).unwrap();
        assert_eq!(shown(&w.cached()), shown(&full));
    }
    // The last full load wrote a good one again.
    assert!(w.through_snapshot().is_some());
}

#[test]
fn a_state_directory_reached_through_a_link_keeps_a_snapshot() {
    let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n");
    let link = w.path("state-link");
    std::os::unix::fs::symlink(&w.state, &link).unwrap();
    load_cached(&w.profiles, Some(&link)).unwrap();
    assert!(load(&link, &w.profiles, None).is_some());
}

#[test]
fn a_state_directory_others_may_write_to_gets_no_snapshot() {
    let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n");
    std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    w.cached();
    assert!(!w.snapshot().exists());
}

#[test]
fn a_listing_shows_what_the_loaded_profiles_show() {
    let w = rich();
    assert!(
        with_listing(&w.state, &w.profiles, |_| ()).is_none(),
        "no snapshot yet"
    );
    let full = w.cached();
    let listed = with_listing(&w.state, &w.profiles, |views| {
        views
            .iter()
            .map(|v| {
                let tags: Vec<String> = v.tags.iter().map(|t| t.to_string()).collect();
                (
                    [v.name, v.url, v.api, v.username, v.platform].map(str::to_string),
                    v.client_id.to_string(),
                    tags,
                    v.insecure,
                    v.password_kind,
                )
            })
            .collect::<Vec<_>>()
    })
    .expect("the snapshot is used");
    let loaded: Vec<_> = full
        .profiles
        .iter()
        .map(|p| {
            (
                [&p.name, p.url.as_str(), &p.api, &p.username, &p.platform].map(str::to_string),
                p.client_id.clone(),
                p.tags.clone(),
                p.insecure,
                p.password.kind(),
            )
        })
        .collect();
    assert_eq!(listed, loaded);
    // An edit is seen, as by a load: no listing until the full load has written it again.
    write(&w.profiles, &RICH.replace("kim@kr", "kim@kr2"));
    assert!(with_listing(&w.state, &w.profiles, |_| ()).is_none());
}
