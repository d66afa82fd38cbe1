//! The demo world: a few believable Sugar instances and a profiles file that points at them.

use super::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};
use std::fmt::Write as _;
use std::time::Duration;

/// The demo instances:
/// - `acme`: production, Sugar 12.0.0 ENT (v10..v11_16); admins `admin` and `integration`, users `jsmith`,
///   `sally`, inactive `max`; platforms `acme_sync` and `custom_api`; an extra client `acme_integration`.
/// - `acme-sandbox`: Sugar 14.0.0 ENT (up to v11_24); `admin`, `integration`, `sally`; same platforms.
/// - `globex`: Sugar 13.0.0 PRO, short lifetimes (access 90 s, refresh 600 s) so that expiry and refresh can
///   be watched; `admin`, `svc_globex`, `will`; platform `custom_api`.
/// - `initech`: Sugar 12.2.0 ENT in maintenance mode; only `admin` can log in; `peter` cannot.
/// - `umbrella`: Sugar 13.0.0 ENT; `wesker`'s profile uses platform `umbrella_bi`, which is not registered
///   (422 "Invalid platform specified.").
///
/// Each holds generated Accounts and Contacts (acme 320 and 760, acme-sandbox 120 and 260, globex 240
/// and 530, initech 150 and 340, umbrella 90 and 210), the same every run.
pub fn demo_config() -> EmulatorConfig {
    let acme = InstanceConfig {
        users: vec![
            UserConfig::admin("admin", "acme-admin-2024", "Administrator"),
            UserConfig::admin("integration", "acme-integration-pw", "Integration User"),
            UserConfig::user("jsmith", "Spring-2024!", "John Smith"),
            UserConfig::user("sally", "sally-acme-pw", "Sally Bronsen"),
            UserConfig {
                active: false,
                ..UserConfig::user("max", "max-acme-pw", "Max Jensen")
            },
        ],
        platforms: vec!["acme_sync".into(), "custom_api".into()],
        clients: vec![
            ("sugar".into(), String::new()),
            ("acme_integration".into(), "acme-client-secret".into()),
        ],
        accounts: 320,
        contacts: 760,
        ..InstanceConfig::new("acme")
    };
    let acme_sandbox = InstanceConfig {
        users: vec![
            UserConfig::admin("admin", "sandbox-admin", "Administrator"),
            UserConfig::admin("integration", "sandbox-integration", "Integration User"),
            UserConfig::user("sally", "sally-sandbox", "Sally Bronsen"),
        ],
        platforms: vec!["acme_sync".into(), "custom_api".into()],
        max_version: "v11_24".into(),
        version: "14.0.0".into(),
        accounts: 120,
        contacts: 260,
        ..InstanceConfig::new("acme-sandbox")
    };
    let globex = InstanceConfig {
        users: vec![
            UserConfig::admin("admin", "globex-admin", "Administrator"),
            UserConfig::user("svc_globex", "globex-service-pw", "Globex Service"),
            UserConfig::user("will", "will-globex-pw", "Will Hank"),
        ],
        platforms: vec!["custom_api".into()],
        access_lifetime: Duration::from_secs(90),
        refresh_lifetime: Duration::from_secs(600),
        max_version: "v11_20".into(),
        flavor: "PRO".into(),
        version: "13.0.0".into(),
        accounts: 240,
        contacts: 530,
        ..InstanceConfig::new("globex")
    };
    let initech = InstanceConfig {
        users: vec![
            UserConfig::admin("admin", "initech-admin", "Bill Lumbergh"),
            UserConfig::user("peter", "initech-peter", "Peter Gibbons"),
            UserConfig::user("milton", "initech-milton", "Milton Waddams"),
        ],
        platforms: vec!["custom_api".into()],
        maintenance: true,
        version: "12.2.0".into(),
        accounts: 150,
        contacts: 340,
        ..InstanceConfig::new("initech")
    };
    let umbrella = InstanceConfig {
        users: vec![
            UserConfig::admin("admin", "umbrella-admin", "Administrator"),
            UserConfig::user("wesker", "umbrella-wesker", "Albert Wesker"),
        ],
        platforms: vec!["custom_api".into()],
        max_version: "v11_20".into(),
        version: "13.0.0".into(),
        accounts: 90,
        contacts: 210,
        ..InstanceConfig::new("umbrella")
    };
    EmulatorConfig {
        instances: vec![acme, acme_sandbox, globex, initech, umbrella],
    }
}

struct DemoProfile {
    name: &'static str,
    comment: &'static str,
    instance: &'static str,
    api: Option<&'static str>,
    username: &'static str,
    password: &'static str,
    platform: Option<&'static str>,
    client: Option<(&'static str, &'static str)>,
    tags: &'static [&'static str],
}

const DEMO_PROFILES: &[DemoProfile] = &[
    DemoProfile {
        name: "acme-prod",
        comment: "The integration user on its own platform and client.",
        instance: "acme",
        api: None,
        username: "integration",
        password: "acme-integration-pw",
        platform: Some("acme_sync"),
        client: Some(("acme_integration", "acme-client-secret")),
        tags: &["acme", "prod"],
    },
    DemoProfile {
        name: "acme-admin",
        comment: "An admin profile (can impersonate users).",
        instance: "acme",
        api: None,
        username: "admin",
        password: "acme-admin-2024",
        platform: None,
        client: None,
        tags: &["acme", "prod"],
    },
    DemoProfile {
        name: "acme-reports",
        comment: "The password was changed on the server: login fails with need_login.",
        instance: "acme",
        api: None,
        username: "jsmith",
        password: "Winter-2023!",
        platform: None,
        client: None,
        tags: &["acme", "prod"],
    },
    DemoProfile {
        name: "acme-sbx",
        comment: "The sandbox runs a newer release and serves v11_24.",
        instance: "acme-sandbox",
        api: Some("v11_24"),
        username: "integration",
        password: "sandbox-integration",
        platform: Some("acme_sync"),
        client: None,
        tags: &["acme", "sandbox"],
    },
    DemoProfile {
        name: "acme-sbx-sally",
        comment: "A regular user on the sandbox.",
        instance: "acme-sandbox",
        api: None,
        username: "sally",
        password: "sally-sandbox",
        platform: None,
        client: None,
        tags: &["acme", "sandbox"],
    },
    DemoProfile {
        name: "globex",
        comment: "Short token lifetimes (access 90 s, refresh 10 min): watch expiry and refresh.",
        instance: "globex",
        api: None,
        username: "svc_globex",
        password: "globex-service-pw",
        platform: None,
        client: None,
        tags: &["globex", "prod"],
    },
    DemoProfile {
        name: "globex-web",
        comment: "On platform base: logging in here logs the user out of the web UI.",
        instance: "globex",
        api: None,
        username: "will",
        password: "will-globex-pw",
        platform: Some("base"),
        client: None,
        tags: &["globex", "prod"],
    },
    DemoProfile {
        name: "initech",
        comment: "Maintenance mode: only admins can log in.",
        instance: "initech",
        api: None,
        username: "peter",
        password: "initech-peter",
        platform: None,
        client: None,
        tags: &["initech", "prod"],
    },
    DemoProfile {
        name: "initech-admin",
        comment: "An admin can still log in during maintenance.",
        instance: "initech",
        api: None,
        username: "admin",
        password: "initech-admin",
        platform: None,
        client: None,
        tags: &["initech", "prod"],
    },
    DemoProfile {
        name: "umbrella",
        comment: "Platform umbrella_bi was never registered on the instance: 422 Invalid platform specified.",
        instance: "umbrella",
        api: None,
        username: "wesker",
        password: "umbrella-wesker",
        platform: Some("umbrella_bi"),
        client: None,
        tags: &["umbrella", "prod"],
    },
];

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A profiles file for the demo world served by `emulator` (plain-text passwords: it is a throwaway world).
pub fn demo_profiles_toml(emulator: &Emulator) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# sugar-sessions demo profiles for the built-in Sugar emulator at {}://{}",
        emulator.scheme(),
        emulator.connect_addr()
    );
    out.push_str("# Throwaway demo world: passwords are written in plain text here. Do not do this for real instances.\n\n");
    out.push_str("[defaults]\n");
    out.push_str("api = \"v11\"\n");
    out.push_str("platform = \"custom_api\"\n");
    for p in DEMO_PROFILES {
        out.push('\n');
        let _ = writeln!(out, "# {}", p.comment);
        let _ = writeln!(out, "[profiles.{}]", p.name);
        let _ = writeln!(out, "url = {}", toml_string(&emulator.url(p.instance)));
        if let Some(api) = p.api {
            let _ = writeln!(out, "api = {}", toml_string(api));
        }
        let _ = writeln!(out, "username = {}", toml_string(p.username));
        let _ = writeln!(out, "password = {}", toml_string(p.password));
        if let Some(platform) = p.platform {
            let _ = writeln!(out, "platform = {}", toml_string(platform));
        }
        if let Some((client_id, client_secret)) = p.client {
            let _ = writeln!(out, "client_id = {}", toml_string(client_id));
            let _ = writeln!(out, "client_secret = {}", toml_string(client_secret));
        }
        let tags: Vec<String> = p.tags.iter().map(|t| toml_string(t)).collect();
        let _ = writeln!(out, "tags = [{}]", tags.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_profiles_match_the_demo_world() {
        let config = demo_config();
        for p in DEMO_PROFILES {
            let instance = config
                .instances
                .iter()
                .find(|i| i.name == p.instance)
                .expect(p.instance);
            let user = instance
                .users
                .iter()
                .find(|u| u.user_name == p.username)
                .expect(p.username);
            let platform = p.platform.unwrap_or("custom_api");
            let registered = ["base", "mobile", "portal"].contains(&platform)
                || instance.platforms.iter().any(|x| x == platform);
            match p.name {
                "acme-reports" => assert_ne!(user.password, p.password),
                "umbrella" => assert!(!registered),
                _ => {
                    assert_eq!(user.password, p.password, "{}", p.name);
                    assert!(registered, "{}", p.name);
                }
            }
            if let Some((id, secret)) = p.client {
                assert!(instance.clients.iter().any(|(i, s)| i == id && s == secret));
            }
        }
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
    }
}
