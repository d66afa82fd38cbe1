//! The profiles file: one fixture per kind of mistake, asserting the exact text a user sees.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use sugar_sessions::config::{self, ConfigError, KeyringEntry, PasswordSource, Profiles, Settings};

const DIR: &str = "tests/fixtures/config";

fn load_ok(fixture: &str) -> Profiles {
    let path = format!("{DIR}/{fixture}");
    // Git keeps no permissions but the executable bit: a fixture with a plain password must be
    // made private before it loads (see a_plain_password_file_others_can_read_is_refused).
    private(Path::new(&path));
    config::load(Path::new(&path)).unwrap_or_else(|e| panic!("{path} should load:\n{e}"))
}

fn private(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The full text a user sees for a bad file, one error a line.
fn refused(fixture: &str) -> String {
    let path = format!("{DIR}/{fixture}");
    match config::load(Path::new(&path)) {
        Ok(p) => panic!(
            "{path} should be refused, loaded {} profiles",
            p.profiles.len()
        ),
        Err(e) => e.to_string(),
    }
}

fn parse(text: &str) -> Result<Profiles, Vec<ConfigError>> {
    config::parse(text, Path::new("profiles.toml"))
}

fn parse_errors(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Expected lines, each prefixed with the fixture's path.
fn lines(fixture: &str, lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("{DIR}/{fixture}:{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_refused(fixture: &str, expected: &[&str]) {
    assert_eq!(refused(fixture), lines(fixture, expected));
}

const PROFILE_KEYS: &str = "url, api, username, password, password_env, password_cmd, \
                            password_keyring, keyring_account, keyring_over_ssh, platform, \
                            client_id, client_secret, tags, allow_http, timeout_s, \
                            auto_refresh, relogin, refresh_before_s, check_interval_s, ca_cert, insecure, proxy";
const DEFAULTS_KEYS: &str = "api, username, password, password_env, password_cmd, \
                             password_keyring, keyring_over_ssh, platform, \
                             client_id, client_secret, tags, allow_http, timeout_s, \
                             auto_refresh, relogin, refresh_before_s, check_interval_s, ca_cert, insecure, proxy, max_concurrency, \
                             max_per_host, read_only, columns";

// ---- One fixture per kind of mistake ------------------------------------------------------------

#[test]
fn unknown_key_suggests_the_closest_known_key() {
    // The misspelt key is not reported a second time as a missing `username`.
    assert_refused(
        "unknown_key.toml",
        &[&format!(
            "3:1: profiles.acme-prod.usernme: unknown key `usernme` (did you mean `username`?); \
             allowed keys: {PROFILE_KEYS}"
        )],
    );
}

#[test]
fn a_dotted_profile_name_must_be_quoted_and_is_said_so_once() {
    let text =
        "[defaults]\nusername = \"u\"\n[profiles.acme.prod]\nurl = \"https://acme.example.com\"\n";
    assert_eq!(
        parse_errors(text),
        "profiles.toml:3:16: profiles.acme.prod: `prod` is a table inside the profile `acme`: a profile name \
         with a dot must be quoted: [profiles.\"acme.prod\"]"
    );
    // Quoted, it is a profile like any other.
    let ok = parse("[defaults]\nusername = \"u\"\n[profiles.\"acme.prod\"]\nurl = \"https://acme.example.com\"\n")
        .unwrap();
    assert_eq!(ok.profiles[0].name, "acme.prod");
}

#[test]
fn unknown_key_without_a_close_match_lists_the_allowed_keys() {
    assert_refused(
        "unknown_key_no_suggestion.toml",
        &[&format!(
            "4:1: profiles.acme-prod.colour: unknown key `colour`; allowed keys: {PROFILE_KEYS}"
        )],
    );
}

#[test]
fn unknown_top_level_table() {
    assert_refused(
        "unknown_top_level_key.toml",
        &[
            "1:2: profile: unknown key `profile` (did you mean `profiles`?); allowed keys: defaults, \
           include, profiles",
        ],
    );
}

#[test]
fn profile_key_at_the_top_level() {
    assert_refused(
        "profile_key_at_top_level.toml",
        &[
            "1:1: username: `username` cannot be set at the top level: profile keys go in a \
             [profiles.NAME] table, shared ones in [defaults]; allowed keys here: defaults, include, profiles",
            "3:1: profiles.acme-prod.username: missing `username` (set it here or in [defaults])",
        ],
    );
}

#[test]
fn url_in_defaults() {
    assert_refused(
        "url_in_defaults.toml",
        &["2:1: defaults.url: `url` cannot be set in [defaults]: each profile sets its own"],
    );
}

#[test]
fn file_setting_in_a_profile() {
    assert_refused(
        "setting_in_profile.toml",
        &[
            "4:1: profiles.acme-prod.max_per_host: `max_per_host` can only be set in [defaults]: it \
           applies to the whole file",
        ],
    );
}

#[test]
fn wrong_value_types() {
    assert_refused(
        "wrong_type.toml",
        &[
            "2:14: defaults.allow_http: expected true or false, found a string",
            "7:13: profiles.acme-prod.timeout_s: expected an integer, found a string",
            "8:8: profiles.acme-prod.tags: expected an array of strings, found a string",
        ],
    );
}

#[test]
fn missing_url_is_located_at_the_table_header() {
    assert_refused(
        "missing_url.toml",
        &[
            "1:1: profiles.acme-prod.url: missing `url` (the instance root, e.g. \
           https://acme.sugarondemand.com)",
        ],
    );
}

#[test]
fn missing_username_is_located_at_the_table_header() {
    assert_refused(
        "missing_username.toml",
        &["1:1: profiles.acme-prod.username: missing `username` (set it here or in [defaults])"],
    );
}

#[test]
fn bad_profile_name() {
    assert_refused(
        "bad_profile_name.toml",
        &[
            "1:11: profiles.\"acme prod\": invalid profile name: use only ASCII letters, digits, `.`, \
           `_` and `-`",
        ],
    );
}

#[test]
fn long_profile_name() {
    // The key is shown cut short: a name of any length makes a line of bounded length.
    assert_refused(
        "long_profile_name.toml",
        &[&format!(
            "2:11: profiles.acme-{}…: the profile name is 129 characters long: at most 128",
            "x".repeat(35)
        )],
    );
    // 128 is fine; 65,536 is refused in a line of the same bounded length.
    let named = |name: &str| {
        format!("[profiles.{name}]\nurl = \"https://a.example.com\"\nusername = \"u\"\n")
    };
    let most = "n".repeat(128);
    assert_eq!(parse(&named(&most)).unwrap().profiles[0].name, most);
    let errors = parse_errors(&named(&"n".repeat(65_536)));
    assert_eq!(
        errors,
        format!(
            "profiles.toml:1:11: profiles.{}…: the profile name is 65536 characters long: at most 128",
            "n".repeat(40)
        )
    );
}

#[test]
fn url_not_http() {
    assert_refused(
        "url_not_http.toml",
        &["2:7: profiles.acme-prod.url: the URL must start with https:// (or http://), not `ftp:`"],
    );
}

#[test]
fn url_unparsable() {
    assert_refused(
        "url_unparsable.toml",
        &[
            "2:7: profiles.acme-prod.url: not a valid URL (relative URL without a base); expected the \
           instance root, e.g. https://acme.sugarondemand.com",
        ],
    );
}

#[test]
fn url_without_host() {
    assert_refused(
        "url_no_host.toml",
        &[
            "2:7: profiles.acme-prod.url: not a valid URL (empty host); expected the instance root, \
           e.g. https://acme.sugarondemand.com",
        ],
    );
}

#[test]
fn url_with_query() {
    assert_refused(
        "url_query.toml",
        &[
            "2:7: profiles.acme-prod.url: the URL must not have a query (`?...`): give the instance \
           root",
        ],
    );
}

#[test]
fn url_with_fragment() {
    assert_refused(
        "url_fragment.toml",
        &[
            "2:7: profiles.acme-prod.url: the URL must not have a fragment (`#...`): give the \
           instance root",
        ],
    );
}

#[test]
fn url_with_rest_path() {
    assert_refused(
        "url_with_rest.toml",
        &[
            "2:7: profiles.acme-prod.url: give the instance root, without `/rest/...`: the client \
           adds /rest/{api}/ itself (set the version with `api`)",
        ],
    );
}

#[test]
fn url_with_credentials() {
    assert_refused(
        "url_with_credentials.toml",
        &[
            "2:7: profiles.acme-prod.url: the URL must not contain a user name or password; use \
           `username` and a password source instead",
        ],
    );
}

#[test]
fn http_to_a_remote_host() {
    assert_refused(
        "http_not_loopback.toml",
        &[
            "2:7: profiles.acme-prod.url: http:// to `acme.sugarondemand.com` would send the \
           password unencrypted; use https:// or set allow_http = true",
        ],
    );
}

#[test]
fn bad_platform() {
    assert_refused(
        "bad_platform.toml",
        &[
            "4:12: profiles.acme-prod.platform: invalid platform `Acme Sync`: use 1 to 127 characters \
           among a-z, A-Z, 0-9, `_` and `-`",
        ],
    );
}

#[test]
fn bad_api_in_defaults_and_in_a_profile() {
    assert_refused(
        "bad_api.toml",
        &[
            "2:7: defaults.api: invalid REST API version `11`: expected `v`, two digits and \
             optionally `_` and one or two digits (e.g. v10, v11, v11_16)",
            "7:7: profiles.acme-prod.api: invalid REST API version `v11_123`: expected `v`, two \
             digits and optionally `_` and one or two digits (e.g. v10, v11, v11_16)",
        ],
    );
}

#[test]
fn more_than_one_password_source() {
    assert_refused(
        "two_password_sources.toml",
        &[
            "5:1: profiles.acme-prod.password_cmd: more than one password source (`password_env` and \
           `password_cmd`); keep only one",
        ],
    );
}

#[test]
fn empty_username() {
    assert_refused(
        "empty_username.toml",
        &["3:12: profiles.acme-prod.username: must not be empty"],
    );
}

#[test]
fn username_with_surrounding_whitespace() {
    assert_refused(
        "username_whitespace.toml",
        &[
            "3:12: profiles.acme-prod.username: starts or ends with whitespace, which would be sent \
           as written; remove it",
        ],
    );
}

#[test]
fn timeout_out_of_range() {
    assert_refused(
        "timeout_out_of_range.toml",
        &[
            "2:13: defaults.timeout_s: must be between 1 and 600 (seconds), found 0",
            "7:13: profiles.acme-prod.timeout_s: must be between 1 and 600 (seconds), found 601",
        ],
    );
}

#[test]
fn bad_tags_are_located_at_the_element() {
    assert_refused(
        "bad_tags.toml",
        &[
            "4:17: profiles.acme-prod.tags[1]: expected a string, found an integer",
            "4:20: profiles.acme-prod.tags[2]: a tag cannot be empty",
            "4:24: profiles.acme-prod.tags[3]: a tag cannot start or end with whitespace",
        ],
    );
}

#[test]
fn bad_file_settings() {
    assert_refused(
        "bad_settings.toml",
        &[
            "2:19: defaults.max_concurrency: must be at least 1, found 0",
            "3:16: defaults.max_per_host: must be at least 1, found -1",
        ],
    );
}

#[test]
fn profiles_as_an_array_of_tables() {
    assert_refused(
        "profiles_array.toml",
        &[
            "1:1: profiles: expected a table of profiles, found an array (write each profile as \
           [profiles.NAME], not [[profiles]])",
        ],
    );
}

#[test]
fn profile_that_is_not_a_table() {
    assert_refused(
        "profile_not_table.toml",
        &["2:13: profiles.acme-prod: expected a table ([profiles.acme-prod]), found a string"],
    );
}

#[test]
fn syntax_error_is_one_located_error_without_a_key() {
    assert_refused(
        "syntax_error.toml",
        &["3:12: invalid TOML: invalid float, expected `inf`"],
    );
    let errors = parse("[profiles.a]\nurl = \"https://a.example.com\"\nurl = \"x\"\n").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "profiles.toml:3:1: invalid TOML: duplicate key `url`"
    );
    assert_eq!(errors[0].key, None);
}

#[test]
fn several_mistakes_are_all_reported_in_file_order() {
    assert_refused(
        "several_mistakes.toml",
        &[
            "3:7: defaults.api: invalid REST API version `v9`: expected `v`, two digits and \
             optionally `_` and one or two digits (e.g. v10, v11, v11_16)",
            "4:1: defaults.platfrom: unknown key `platfrom` (did you mean `platform`?); allowed \
             keys: api, username, password, password_env, password_cmd, password_keyring, \
             keyring_over_ssh, platform, client_id, \
             client_secret, tags, allow_http, timeout_s, auto_refresh, relogin, \
             refresh_before_s, check_interval_s, ca_cert, insecure, proxy, max_concurrency, max_per_host, \
             read_only, columns",
            "10:1: profiles.acme-prod.password: more than one password source (`password_env` and \
             `password`); keep only one",
            "11:13: profiles.acme-prod.timeout_s: must be between 1 and 600 (seconds), found 0",
            "14:7: profiles.globex.url: http:// to `crm.globex.com` would send the password \
             unencrypted; use https:// or set allow_http = true",
            "15:12: profiles.globex.username: must not be empty",
            "17:1: profiles.initech.url: missing `url` (the instance root, e.g. \
             https://acme.sugarondemand.com)",
            "17:1: profiles.initech.username: missing `username` (set it here or in [defaults])",
            "18:20: profiles.initech.tags[1]: expected a string, found an integer",
        ],
    );
}

#[test]
fn errors_carry_their_parts() {
    let errors =
        parse("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"\"\n").unwrap_err();
    assert_eq!(
        errors,
        vec![ConfigError {
            file: "profiles.toml".into(),
            line: 3,
            column: 12,
            key: Some("profiles.a.username".into()),
            message: "must not be empty".into(),
        }]
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let text =
        "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"é\"\ntags = [\"ü\", 1]\n";
    assert_eq!(
        parse_errors(text),
        "profiles.toml:4:14: profiles.a.tags[1]: expected a string, found an integer"
    );
}

#[test]
fn profile_names_that_need_quotes_are_quoted_in_key_paths() {
    let text = "[profiles.\"acme.prod\"]\nusername = \"jdoe\"\n";
    assert_eq!(
        parse_errors(text),
        "profiles.toml:1:1: profiles.\"acme.prod\".url: missing `url` (the instance root, e.g. \
         https://acme.sugarondemand.com)"
    );
}

#[test]
fn a_plain_password_never_appears_in_any_error() {
    let text = refused("secrets.toml");
    assert_eq!(
        text,
        lines(
            "secrets.toml",
            &[
                &format!(
                    "3:1: defaults.client_secert: unknown key `client_secert` (did you mean \
                     `client_secret`?); allowed keys: {DEFAULTS_KEYS}"
                ),
                "6:7: profiles.acme-prod.url: the URL must not contain a user name or password; \
                 use `username` and a password source instead",
                "9:1: profiles.acme-prod.password_cmd: more than one password source (`password`, \
                 `password_cmd` and `password_env`); keep only one",
                "15:12: profiles.globex.password: expected a string, found an array",
                "16:17: profiles.globex.client_secret: expected a string, found an integer",
            ]
        )
    );
    // Syntax errors around secrets do not quote them either.
    for bad in [
        "[profiles.a]\npassword = \"Hunter2-Secret\n",
        "[profiles.a]\npassword = Hunter2-Secret\n",
        "[profiles.a]\npassword = 'Hunter2-Secret' 'Client-Secret-42'\n",
        "[profiles.a]\npassword = \"Hunter2-Secret\"\npassword = \"Client-Secret-42\"\n",
        "[defaults]\nclient_secret = \"Client-Secret-42\"\nclient_secret = 1\n",
        "[profiles.a]\npassword = \"\"\nclient_secret = \"Hunter2-Secret\"\n",
    ] {
        let text = text.clone() + "\n" + &parse_errors(bad);
        assert!(!text.contains("Hunter2"), "{text}");
        assert!(!text.contains("Client-Secret"), "{text}");
    }
    // Nor does the loaded configuration's debug output.
    let profiles = load_ok("ok_password_sources.toml");
    assert!(!format!("{profiles:?}").contains("Hunter2"));
    let profiles = load_ok("ok_defaults.toml");
    assert!(!format!("{profiles:?}").contains("Client-Secret"));
}

#[test]
fn an_unreadable_file_names_the_file() {
    let e = config::load(Path::new("tests/fixtures/config/no-such-file.toml")).unwrap_err();
    assert!(matches!(e, config::LoadError::Io { .. }));
    // A file that is not there yet says how to start.
    let said = e.to_string();
    assert!(
        said.starts_with("tests/fixtures/config/no-such-file.toml: no profiles file here yet"),
        "{said}"
    );
    for way in [
        "profiles.example.toml",
        "--profiles FILE",
        "sugar-sessions demo",
    ] {
        assert!(said.contains(way), "{said}");
    }
    // One that cannot be read says why.
    let e = config::load(Path::new("tests/fixtures/config")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("tests/fixtures/config: cannot read the profiles file: "),
        "{e}"
    );
}

// ---- Files that load -----------------------------------------------------------------------------

#[test]
fn a_profile_overrides_defaults_key_by_key() {
    let file = load_ok("ok_defaults.toml");
    assert_eq!(
        file.settings,
        Settings {
            max_concurrency: 16,
            max_per_host: 2,
            read_only: false,
            columns: None,
        }
    );

    let own = file.get("own").unwrap();
    assert_eq!(own.url.as_str(), "https://own.example.com/");
    assert_eq!(own.api, "v10");
    assert_eq!(own.username, "integration");
    assert_eq!(own.client_id, "own_client");
    assert_eq!(own.client_secret.expose(), "");
    assert_eq!(own.platform, "own_sync");
    assert_eq!(own.tags, ["own", "prod"]);
    assert!(!own.allow_http);
    assert_eq!(own.timeout, Duration::from_secs(30));
    assert_eq!(own.connect_timeout, Duration::from_secs(5));
    assert_eq!(own.password, PasswordSource::Prompt);

    let inherits = file.get("inherits").unwrap();
    assert_eq!(inherits.url.as_str(), "http://crm.inherits.example.com/");
    assert_eq!(inherits.api, "v11_16");
    assert_eq!(inherits.username, "jdoe");
    assert_eq!(inherits.client_id, "acme_consulting");
    assert_eq!(inherits.client_secret.expose(), "Client-Secret-42");
    assert_eq!(inherits.platform, "consulting");
    assert_eq!(inherits.tags, ["client"]);
    // allow_http from [defaults] permits the http:// url.
    assert!(inherits.allow_http);
    assert_eq!(inherits.timeout, Duration::from_secs(3));
    assert_eq!(inherits.connect_timeout, Duration::from_secs(3));
}

#[test]
fn built_in_defaults() {
    let file = load_ok("ok_builtin_defaults.toml");
    assert_eq!(
        file.settings,
        Settings {
            max_concurrency: 64,
            max_per_host: 8,
            read_only: false,
            columns: None,
        }
    );
    let p = &file.profiles[0];
    assert_eq!(p.name, "plain");
    assert_eq!(p.api, "v11");
    assert_eq!(p.client_id, "sugar");
    assert!(p.client_secret.is_empty());
    assert_eq!(p.platform, "custom_api");
    assert!(p.tags.is_empty());
    assert!(!p.allow_http);
    assert_eq!(p.timeout, Duration::from_secs(20));
    assert_eq!(p.connect_timeout, Duration::from_secs(5));
    assert_eq!(p.password, PasswordSource::Prompt);
    assert!(!p.password.is_non_interactive());
}

#[test]
fn a_password_source_in_a_profile_replaces_the_defaults_one() {
    let file = load_ok("ok_password_sources.toml");
    let source = |name: &str| file.get(name).unwrap().password.clone();
    assert_eq!(source("env"), PasswordSource::Env("SUGAR_PASSWORD".into()));
    assert_eq!(
        source("cmd"),
        PasswordSource::Cmd("pass show sugar/cmd".into())
    );
    assert_eq!(
        source("other-env"),
        PasswordSource::Env("OTHER_PASSWORD".into())
    );
    match source("plain") {
        PasswordSource::Plain(secret) => assert_eq!(secret.expose(), "Hunter2-Secret"),
        other => panic!("expected a plain password, got {other:?}"),
    }
}

#[test]
fn profiles_keep_the_order_of_the_file() {
    let file = load_ok("ok_order.toml");
    let names: Vec<&str> = file.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["zeta", "acme.prod", "Mid_1", "alpha"]);

    // Inline tables and dotted keys too.
    let text = "[profiles]\nb = { url = \"https://b.example.com\", username = \"u\" }\n\
                a.url = \"https://a.example.com\"\na.username = \"u\"\n";
    let names: Vec<String> = parse(text)
        .unwrap()
        .profiles
        .into_iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, ["b", "a"]);
}

#[test]
fn http_to_loopback_is_allowed_and_allow_http_permits_other_hosts() {
    let file = load_ok("ok_http.toml");
    let url = |name: &str| file.get(name).unwrap().url.to_string();
    assert_eq!(url("localhost"), "http://localhost:8080/");
    // A trailing slash is trimmed; a path is kept.
    assert_eq!(url("loopback-v4"), "http://127.0.0.2:8080/acme");
    assert_eq!(url("loopback-v6"), "http://[::1]:8080/globex");
    assert_eq!(url("lab"), "http://sugar-lab.office.internal/");
    assert!(file.get("lab").unwrap().allow_http);
    assert!(!file.get("localhost").unwrap().allow_http);

    // The same remote host without allow_http is refused (see http_not_loopback.toml), also when
    // allow_http is false explicitly, and when it is allowed only in [defaults] it passes.
    let remote = "[profiles.lab]\nurl = \"http://10.0.0.5\"\nusername = \"u\"\n";
    assert_eq!(
        parse_errors(&format!("{remote}allow_http = false\n")),
        "profiles.toml:2:7: profiles.lab.url: http:// to `10.0.0.5` would send the password \
         unencrypted; use https:// or set allow_http = true"
    );
    assert!(parse(&format!("[defaults]\nallow_http = true\n{remote}")).is_ok());
    // A name that merely starts like loopback is not loopback.
    assert!(
        parse("[profiles.x]\nurl = \"http://localhost.example.com\"\nusername = \"u\"\n").is_err()
    );
}

#[test]
fn platforms_may_have_upper_case_as_sugar_allows() {
    let file = parse(
        "[defaults]\nplatform = \"Acme_Sync-2\"\n\
         [profiles.scribe]\nurl = \"https://a.example\"\nusername = \"u\"\nplatform = \"SCRIBE\"\n\
         [profiles.other]\nurl = \"https://a.example\"\nusername = \"v\"\n",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    // Kept as written: Sugar matches platform names exactly.
    assert_eq!(file.get("scribe").unwrap().platform, "SCRIBE");
    assert_eq!(file.get("other").unwrap().platform, "Acme_Sync-2");
    for bad in ["SCRIBE 2", "Scribé", "a.b", &"A".repeat(128)] {
        let text = format!(
            "[profiles.x]\nurl = \"https://a.example\"\nusername = \"u\"\nplatform = \"{bad}\"\n"
        );
        assert!(
            parse_errors(&text).contains("among a-z, A-Z, 0-9, `_` and `-`"),
            "{bad}"
        );
    }
}

#[test]
fn an_empty_file_or_empty_profiles_table_is_valid() {
    for text in [
        "",
        "# nothing yet\n",
        "[profiles]\n",
        "[defaults]\nplatform = \"mine\"\n",
    ] {
        let file = parse(text).unwrap();
        assert!(file.profiles.is_empty());
        assert_eq!(file.path, Path::new("profiles.toml"));
    }
}

#[test]
fn helpers_on_profiles() {
    let file = load_ok("ok_http.toml");
    let p = file.get("loopback-v4").unwrap();
    assert_eq!(p.host_port(), "127.0.0.2:8080");
    assert_eq!(p.root(), "http://127.0.0.2:8080/acme");
    assert_eq!(
        p.api_url("oauth2/token"),
        "http://127.0.0.2:8080/acme/rest/v11/oauth2/token"
    );
    let p = file.get("lab").unwrap();
    assert_eq!(p.root(), "http://sugar-lab.office.internal");
    assert_eq!(
        p.api_url("/me"),
        "http://sugar-lab.office.internal/rest/v11/me"
    );
    assert!(file.get("nope").is_none());
}

// ---- The example file ----------------------------------------------------------------------------

#[test]
fn the_example_file_loads() {
    let file = config::load(Path::new("profiles.example.toml")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = file.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "acme-prod",
            "acme-sandbox",
            "acme-sync",
            "globex",
            "umbrella",
            "acme-desk",
            "initech",
            "lab",
            "local"
        ]
    );
    assert_eq!(
        file.get("acme-desk").unwrap().password,
        PasswordSource::Keyring(KeyringEntry {
            account: "jdoe@acme.sugarondemand.com".into(),
            over_ssh: false,
        })
    );
    assert!(file.profiles.iter().any(|p| p.has_tag("prod")));
    assert!(
        file.profiles
            .iter()
            .any(|p| matches!(p.password, PasswordSource::Cmd(_)))
    );
    assert!(
        file.profiles
            .iter()
            .all(|p| !matches!(p.password, PasswordSource::Plain(_)))
    );
    let umbrella = file.get("umbrella").unwrap();
    assert_eq!(umbrella.proxy.as_ref().map(|u| u.scheme()), Some("socks5h"));
    assert!(
        file.profiles
            .iter()
            .all(|p| !p.insecure && p.ca_cert.is_none())
    );
}

// ---- A plain password in a file others can read --------------------------------------------------

#[test]
fn a_plain_password_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.toml");
    let with_password = "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n\
                         password = \"Hunter2-Secret\"\n";
    std::fs::write(&path, with_password).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let text = config::load(&path).unwrap_err().to_string();
        assert_eq!(
            text,
            format!(
                "{p}:4:1: profiles.a.password: the file holds a plain password, and others can \
                 read or change it (mode {mode:03o}): run `chmod 600 {p}`, or use password_env, \
                 password_cmd or password_keyring",
                p = path.display()
            )
        );
        assert!(!text.contains("Hunter2"));
    }
    for mode in [0o600, 0o400] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        config::load(&path).unwrap();
    }
    // In [defaults] too, even when every profile has its own source: it is still in the file.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &path,
        "[defaults]\npassword = \"Hunter2-Secret\"\n[profiles.a]\nurl = \"https://a.example.com\"\n\
         username = \"u\"\npassword_env = \"A_PW\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = config::load(&path).unwrap_err().to_string();
    assert!(
        text.starts_with(&format!(
            "{}:2:1: defaults.password: the file holds a plain password",
            path.display()
        )),
        "{text}"
    );
    // Without a plain password, a readable file is fine (sources name the secret, hold none of it).
    std::fs::write(
        &path,
        "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\npassword_env = \"A_PW\"\n\
         client_secret = \"not-a-password\"\n",
    )
    .unwrap();
    config::load(&path).unwrap();
    // A file with mistakes reports them (the permissions come after they are fixed).
    std::fs::write(&path, format!("{with_password}colour = 1\n")).unwrap();
    let text = config::load(&path).unwrap_err().to_string();
    assert!(
        text.contains("unknown key `colour`") && !text.contains("chmod"),
        "{text}"
    );
}

#[test]
fn the_example_file_shows_every_key_and_a_plain_password_only_commented_out() {
    let text = std::fs::read_to_string("profiles.example.toml").unwrap();
    let keys = [
        "url",
        "api",
        "username",
        "password",
        "password_env",
        "password_cmd",
        "password_keyring",
        "keyring_account",
        "keyring_over_ssh",
        "platform",
        "client_id",
        "client_secret",
        "tags",
        "allow_http",
        "timeout_s",
        "max_concurrency",
        "max_per_host",
    ];
    for key in keys {
        let set = text.lines().any(|l| {
            l.trim_start()
                .trim_start_matches("# ")
                .starts_with(&format!("{key} = "))
        });
        assert!(set, "profiles.example.toml does not show `{key}`");
    }
    assert!(text.lines().any(|l| l.starts_with("# password = ")));
    assert!(!text.lines().any(|l| l.starts_with("password = ")));
}

// ---- read_only and columns ------------------------------------------------------------------------

const ONE_PROFILE: &str =
    "\n[profiles.acme]\nurl = \"https://acme.example.com\"\nusername = \"jim\"\n";

#[test]
fn read_only_and_columns_are_read_from_defaults() {
    let file = parse(&format!(
        "[defaults]\nread_only = true\ncolumns = [\"name\", \"state\", \"instance\", \"last\"]\n{ONE_PROFILE}"
    ))
    .unwrap();
    assert!(file.settings.read_only);
    assert_eq!(
        file.settings.columns.as_deref(),
        Some(&["name", "state", "instance", "last"][..])
    );
    let plain = parse(ONE_PROFILE).unwrap();
    assert!(!plain.settings.read_only);
    assert_eq!(plain.settings.columns, None);
}

#[test]
fn an_unknown_column_is_located_at_its_element_with_the_closest_name_and_the_allowed_ones() {
    assert_eq!(
        parse_errors(&format!(
            "[defaults]\ncolumns = [\"name\", \"instnce\", \"state\", \"colour\"]\n{ONE_PROFILE}"
        )),
        "profiles.toml:2:20: defaults.columns[1]: unknown column `instnce` (did you mean \
         `instance`?); allowed columns: name, tags, instance, user, platform, state, token, \
         refresh, last\n\
         profiles.toml:2:40: defaults.columns[3]: unknown column `colour`; allowed columns: name, \
         tags, instance, user, platform, state, token, refresh, last"
    );
}

#[test]
fn columns_twice_wrong_types_and_without_name_or_state_are_refused() {
    assert_eq!(
        parse_errors(&format!(
            "[defaults]\ncolumns = [\"name\", \"state\", \"name\", 3]\n{ONE_PROFILE}"
        )),
        "profiles.toml:2:29: defaults.columns[2]: `name` is listed twice\n\
         profiles.toml:2:37: defaults.columns[3]: expected a column name (a string), found an \
         integer"
    );
    assert_eq!(
        parse_errors(&format!("[defaults]\ncolumns = [\"tags\"]\n{ONE_PROFILE}")),
        "profiles.toml:2:11: defaults.columns: `name` and `state` missing: the screen always \
         shows the name and the state"
    );
    assert_eq!(
        parse_errors(&format!(
            "[defaults]\ncolumns = \"name\"\nread_only = 1\n{ONE_PROFILE}"
        )),
        "profiles.toml:2:11: defaults.columns: expected an array of column names, found a string\n\
         profiles.toml:3:13: defaults.read_only: expected true or false, found an integer"
    );
}

#[test]
fn read_only_and_columns_belong_only_in_defaults() {
    assert_eq!(
        parse_errors(
            "[profiles.acme]\nurl = \"https://acme.example.com\"\nusername = \"jim\"\n\
             read_only = true\ncolumns = [\"name\", \"state\"]\n"
        ),
        "profiles.toml:4:1: profiles.acme.read_only: `read_only` can only be set in [defaults]: \
         it applies to the whole file\n\
         profiles.toml:5:1: profiles.acme.columns: `columns` can only be set in [defaults]: it \
         applies to the whole file"
    );
}

// ---- The OS keyring ------------------------------------------------------------------------------

#[test]
fn the_keyring_account_is_user_at_host_unless_named_and_ssh_comes_from_defaults() {
    let p = parse(
        "[defaults]\nusername = \"jim\"\nkeyring_over_ssh = true\n\
         [profiles.a]\nurl = \"https://a.example.com:8443/sugar\"\npassword_keyring = true\n\
         [profiles.b]\nurl = \"https://a.example.com\"\npassword_keyring = true\n\
         keyring_account = \"jim-at-a\"\nkeyring_over_ssh = false\n",
    )
    .unwrap();
    let entry = |account: &str, over_ssh| {
        PasswordSource::Keyring(KeyringEntry {
            account: account.into(),
            over_ssh,
        })
    };
    assert_eq!(p.profiles[0].password, entry("jim@a.example.com", true));
    assert_eq!(p.profiles[1].password, entry("jim-at-a", false));
    assert_eq!(p.profiles[0].password.kind(), "keyring");
}

#[test]
fn password_keyring_from_defaults_and_false_in_a_profile() {
    let p = parse(
        "[defaults]\nusername = \"jim\"\npassword_keyring = true\n\
         [profiles.a]\nurl = \"https://a.example.com\"\n\
         [profiles.b]\nurl = \"https://b.example.com\"\npassword_keyring = false\n\
         [profiles.c]\nurl = \"https://c.example.com\"\npassword_env = \"C_PW\"\n",
    )
    .unwrap();
    assert!(
        matches!(&p.profiles[0].password, PasswordSource::Keyring(e) if e.account == "jim@a.example.com")
    );
    assert_eq!(p.profiles[1].password, PasswordSource::Prompt);
    assert_eq!(p.profiles[2].password, PasswordSource::Env("C_PW".into()));
    // `password_keyring = false` beside another source is no second source.
    let p = parse(
        "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n\
         password_keyring = false\npassword_env = \"A_PW\"\n",
    )
    .unwrap();
    assert_eq!(p.profiles[0].password, PasswordSource::Env("A_PW".into()));
}

#[test]
fn keyring_mistakes_are_located() {
    let base = "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n";
    assert_eq!(
        parse_errors(&format!(
            "{base}password_env = \"A_PW\"\npassword_keyring = true\n"
        )),
        "profiles.toml:5:1: profiles.a.password_keyring: more than one password source \
         (`password_env` and `password_keyring`); keep only one"
    );
    assert_eq!(
        parse_errors(&format!("{base}password_keyring = \"yes\"\n")),
        "profiles.toml:4:20: profiles.a.password_keyring: expected true or false, found a string"
    );
    assert_eq!(
        parse_errors(&format!(
            "{base}password_env = \"A_PW\"\nkeyring_account = \"u@a\"\n"
        )),
        "profiles.toml:5:1: profiles.a.keyring_account: the password does not come from the OS \
         keyring: set password_keyring = true, or remove keyring_account"
    );
    assert_eq!(
        parse_errors(&format!(
            "{base}password_keyring = true\nkeyring_account = \"\"\n"
        )),
        "profiles.toml:5:19: profiles.a.keyring_account: must not be empty"
    );
    assert_eq!(
        parse_errors(&format!("{base}keyring_over_ssh = 1\n")),
        "profiles.toml:4:20: profiles.a.keyring_over_ssh: expected true or false, found an integer"
    );
    assert!(
        parse_errors("[defaults]\nkeyring_account = \"x\"\n")
            .starts_with("profiles.toml:2:1: defaults.keyring_account: ")
    );
}

// ---------------------------------------------------------------------------------------------
// Includes and catalogues (README: "Catalogues"). Each test builds its files in a tempdir, with
// the modes set explicitly (the umask must not decide whether a catalogue is safe).
// ---------------------------------------------------------------------------------------------

/// Writes `name` under `dir` (its directories made 0755), mode 0644.
fn put(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut parent = path.parent().unwrap();
    let mut made = Vec::new();
    while !parent.exists() {
        made.push(parent.to_path_buf());
        parent = parent.parent().unwrap();
    }
    for d in made.iter().rev() {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn load_errors(path: &Path) -> String {
    match config::load(path) {
        Ok(p) => panic!("should be refused, loaded {} profiles", p.profiles.len()),
        Err(e) => e.to_string(),
    }
}

const CLIENTS: &str = "\
[defaults]
platform = \"team_api\"
api = \"v11_16\"

[profiles.acme]
url = \"https://acme.example.com\"
tags = [\"client\"]

[profiles.globex]
url = \"https://globex.example.com\"
api = \"v10\"
username = \"shared\"
";

#[test]
fn an_overlay_completes_a_catalogue_profile_and_defaults_layer_nearest_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "team/clients.toml", CLIENTS);
    let top = put(
        d,
        "profiles.toml",
        "include = [\"team/clients.toml\"]\n\
         [defaults]\nusername = \"jim\"\napi = \"v11_20\"\n\
         [profiles.acme]\npassword_env = \"ACME_PW\"\ntags = [\"mine\"]\n\
         [profiles.own]\nurl = \"https://own.example.com\"\n",
    );
    let p = config::load_with_origins(&top).unwrap();
    let names: Vec<&str> = p.profiles.iter().map(|p| p.name.as_str()).collect();
    // The catalogue's profiles where it is included, then the file's own.
    assert_eq!(names, ["acme", "globex", "own"]);
    let acme = p.get("acme").unwrap();
    assert_eq!(acme.url.as_str(), "https://acme.example.com/");
    // The overlay's keys win over the catalogue table's.
    assert_eq!(acme.tags, ["mine"]);
    assert_eq!(acme.password, PasswordSource::Env("ACME_PW".into()));
    // Unset in both tables: the including file's [defaults] first, then the catalogue's.
    assert_eq!(acme.username, "jim");
    assert_eq!(acme.api, "v11_20");
    assert_eq!(acme.platform, "team_api");
    // A key of the catalogue's table wins over every [defaults].
    let globex = p.get("globex").unwrap();
    assert_eq!(globex.api, "v10");
    assert_eq!(globex.username, "shared");
    // The catalogue's [defaults] do not reach the including file's own profiles.
    let own = p.get("own").unwrap();
    assert_eq!(own.platform, "custom_api");
    assert_eq!(own.api, "v11_20");
    // Every file read, for the watch; where each key came from, for `list --origin`.
    let clients = d.join("team/clients.toml");
    assert_eq!(p.files, [top.clone(), clients.clone()]);
    // Only `list --origin` pays for finding them.
    assert!(config::load(&top).unwrap().origins.is_empty());
    let origin: Vec<(&str, String)> = p.origin_of("acme");
    let (t, c) = (top.display(), clients.display());
    assert_eq!(
        origin,
        [
            ("url", format!("{c}:6")),
            ("api", format!("{t}:4")),
            ("username", format!("{t}:3")),
            ("password_env", format!("{t}:6")),
            ("platform", format!("{c}:2")),
            ("tags", format!("{t}:7")),
        ]
    );
}

#[test]
fn the_same_profile_in_two_catalogues_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(
        d,
        "a.toml",
        "[profiles.acme]\nurl = \"https://a.example.com\"\n",
    );
    put(
        d,
        "b.toml",
        "# b\n[profiles.acme]\nurl = \"https://b.example.com\"\n",
    );
    let top = put(
        d,
        "profiles.toml",
        "include = [\"a.toml\", \"b.toml\"]\n[defaults]\nusername = \"u\"\n",
    );
    let d = d.display();
    assert_eq!(
        load_errors(&top),
        format!(
            "{d}/b.toml:2:11: profiles.acme: the profile `acme` is also defined at \
             {d}/a.toml:1:11: define it in one catalogue (and complete it in the file that \
             includes it) (included from {d}/profiles.toml:1:22)"
        )
    );
}

#[test]
fn an_include_cycle_is_refused_naming_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "a.toml", "include = [\"b.toml\"]\n");
    put(d, "b.toml", "\ninclude = [\"a.toml\"]\n");
    let top = put(d, "profiles.toml", "include = [\"a.toml\"]\n");
    let d = d.display();
    assert_eq!(
        load_errors(&top),
        format!(
            "{d}/b.toml:2:12: include[0]: include cycle: {d}/a.toml includes {d}/b.toml \
             includes {d}/a.toml (included from {d}/a.toml:1:12, included from \
             {d}/profiles.toml:1:12)"
        )
    );
}

#[test]
fn a_catalogue_holds_no_secrets_and_no_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(
        d,
        "team/clients.toml",
        "[defaults]\nread_only = true\nproxy = \"http://proxy:3128\"\n\
         password_cmd = \"pass acme\"\n\
         [profiles.acme]\nurl = \"https://acme.example.com\"\npassword = \"hunter2\"\n\
         insecure = true\nallow_http = true\n",
    );
    let top = put(
        d,
        "profiles.toml",
        "include = [\"team/clients.toml\"]\n[defaults]\nusername = \"u\"\n",
    );
    let (c, t) = (d.join("team/clients.toml"), top.display());
    let c = c.display();
    let secret = |key: &str| {
        format!(
            "an included file (a catalogue) holds no secrets nor security exceptions: set `{key}` \
             in the profiles file that includes it (in a [profiles.NAME] overlay or its \
             [defaults]) (included from {t}:1:12)"
        )
    };
    assert_eq!(
        load_errors(&top),
        [
            format!(
                "{c}:2:1: defaults.read_only: `read_only` is a setting of the whole file: only \
                 the top-level profiles file may set it (included from {t}:1:12)"
            ),
            format!("{c}:3:1: defaults.proxy: {}", secret("proxy")),
            format!("{c}:4:1: defaults.password_cmd: {}", secret("password_cmd")),
            format!("{c}:7:1: profiles.acme.password: {}", secret("password")),
            format!("{c}:8:1: profiles.acme.insecure: {}", secret("insecure")),
            format!(
                "{c}:9:1: profiles.acme.allow_http: {}",
                secret("allow_http")
            ),
        ]
        .join("\n")
    );
}

/// A catalogue names its instance's URL: were it to name the keyring entry too, it could send
/// the password of another instance's entry there (and over SSH, from the desktop's keyring).
#[test]
fn a_catalogue_names_no_keyring_entry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = put(
        d,
        "team/clients.toml",
        "[defaults]\nkeyring_over_ssh = true\n\
         [profiles.x]\nurl = \"https://x.example.com\"\npassword_keyring = true\n\
         keyring_account = \"jim@acme.example.com\"\n",
    );
    let top = put(
        d,
        "profiles.toml",
        "include = [\"team/clients.toml\"]\n[defaults]\nusername = \"jim\"\n",
    );
    let errors = load_errors(&top);
    let c = c.display();
    for located in [
        format!("{c}:2:1: defaults.keyring_over_ssh: an included file (a catalogue)"),
        format!("{c}:6:1: profiles.x.keyring_account: an included file (a catalogue)"),
    ] {
        assert!(errors.contains(&located), "{errors}");
    }
}

#[test]
fn a_catalogue_holds_no_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = put(
        d,
        "team/clients.toml",
        "[profiles.x]\nurl = \"https://x.example.com\"\nclient_id = \"team\"\n\
         client_secret = \"s3cr3t-of-the-team\"\n",
    );
    let top = put(
        d,
        "profiles.toml",
        "include = [\"team/clients.toml\"]\n[defaults]\nusername = \"jim\"\n",
    );
    let errors = load_errors(&top);
    let located = format!(
        "{}:4:1: profiles.x.client_secret: an included file (a catalogue)",
        c.display()
    );
    assert!(errors.contains(&located), "{errors}");
    assert!(!errors.contains("s3cr3t"), "{errors}");
}

#[test]
fn a_catalogue_others_can_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clients = put(d, "team/clients.toml", CLIENTS);
    let top = put(
        d,
        "profiles.toml",
        "include = [\n  \"team/clients.toml\",\n]\n[defaults]\nusername = \"u\"\n",
    );
    std::fs::set_permissions(&clients, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (c, t) = (clients.display(), top.display());
    assert_eq!(
        load_errors(&top),
        format!(
            "{t}:2:3: include[0]: others can change {c} (mode 664): refused, as OpenSSH refuses \
             such configuration; run `chmod go-w {c}`"
        )
    );
    // Its own mode is fine, but anyone may replace it in its directory.
    std::fs::set_permissions(&clients, std::fs::Permissions::from_mode(0o644)).unwrap();
    let team = d.join("team");
    std::fs::set_permissions(&team, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        load_errors(&top),
        format!(
            "{t}:2:3: include[0]: others can replace {c}: its directory {} is writable by others \
             (mode 777): refused, as OpenSSH refuses such configuration",
            team.display()
        )
    );
    // With the sticky bit (as /tmp), only its owner may: loaded.
    std::fs::set_permissions(&team, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(config::load(&top).unwrap().profiles.len(), 2);
}

#[test]
fn a_glob_includes_each_file_it_matches_never_the_including_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(
        d,
        "conf.d/b.toml",
        "[profiles.b]\nurl = \"https://b.example.com\"\n",
    );
    put(
        d,
        "conf.d/a.toml",
        "[profiles.a]\nurl = \"https://a.example.com\"\n",
    );
    put(d, "conf.d/notes.txt", "not toml");
    put(d, "conf.d/.hidden.toml", "not toml either");
    // The including file matches its own glob: left out, not a cycle.
    let top = put(
        d,
        "conf.d/main.toml",
        "include = [\"*.toml\", \"empty.d/*.toml\", \"absent.d/*.toml\"]\n\
         [defaults]\nusername = \"u\"\n",
    );
    put(d, "conf.d/empty.d/.keep", "");
    let p = config::load(&top).unwrap();
    let names: Vec<&str> = p.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let conf = d.join("conf.d");
    assert_eq!(
        p.dirs,
        [conf.clone(), conf.join("empty.d"), conf.join("absent.d")]
    );
    // A glob in a directory name is not one.
    std::fs::write(&top, "include = [\"*/x.toml\"]\n").unwrap();
    assert_eq!(
        load_errors(&top),
        format!(
            "{}:1:12: include[0]: a glob may only be in the file name (e.g. conf.d/*.toml), not \
             in a directory",
            top.display()
        )
    );
}

#[test]
fn a_missing_include_is_located_at_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let top = put(
        dir.path(),
        "profiles.toml",
        "include = [\"conf.d/*.toml\", \"team/clients.toml\", 3]\n",
    );
    let t = top.display();
    assert_eq!(
        load_errors(&top),
        format!(
            "{t}:1:29: include[1]: no such file: {}\n\
             {t}:1:50: include[2]: expected a file name (a string), found an integer",
            dir.path().join("team/clients.toml").display()
        )
    );
    assert_eq!(
        parse_errors("[defaults]\ninclude = [\"a.toml\"]\n"),
        "profiles.toml:2:1: defaults.include: `include` goes at the top of the file, before any \
         [table] (TOML puts a key written after a table header in that table)"
    );
    assert_eq!(
        parse_errors("include = \"a.toml\"\n"),
        "profiles.toml:1:11: include: expected an array of file names (include = \
         [\"team/clients.toml\"]), found a string"
    );
}

#[test]
fn nested_catalogues_layer_nearest_the_top_first_and_a_file_reached_twice_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(
        d,
        "c.toml",
        "[defaults]\nplatform = \"c_plat\"\napi = \"v10\"\n\
         [profiles.x]\nurl = \"https://x.example.com\"\ntags = [\"c\"]\n",
    );
    put(
        d,
        "b.toml",
        "include = [\"c.toml\"]\n[defaults]\napi = \"v11_1\"\ntimeout_s = 30\n\
         [profiles.x]\ntags = [\"b\"]\nclient_id = \"b_client\"\n",
    );
    let top = put(
        d,
        "profiles.toml",
        "include = [\"b.toml\", \"*.toml\"]\n[defaults]\ntimeout_s = 40\n\
         [profiles.x]\nusername = \"a\"\n",
    );
    let p = config::load(&top).unwrap();
    assert_eq!(p.profiles.len(), 1);
    let x = p.get("x").unwrap();
    assert_eq!(x.tags, ["b"]);
    assert_eq!(x.client_id, "b_client");
    assert_eq!(x.username, "a");
    assert_eq!(x.api, "v11_1");
    assert_eq!(x.platform, "c_plat");
    assert_eq!(x.timeout, Duration::from_secs(40));
    assert_eq!(p.files, [top, d.join("b.toml"), d.join("c.toml")]);
}

/// An include that is not a regular file (a FIFO here) is refused at once: reading it would wait
/// for a writer that never comes.
#[test]
fn an_included_fifo_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("clients.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let top = put(
        d,
        "profiles.toml",
        "include = [\"clients.toml\"]\n[defaults]\nusername = \"u\"\n",
    );
    let errors = load_errors(&top);
    assert!(
        errors.contains(&format!("{} is not a regular file", fifo.display())),
        "{errors}"
    );
}

/// Two catalogues include a third: its profile is one profile, and an overlay in the second
/// catalogue completes it as one in the first would (it is not taken for a second definition).
#[test]
fn a_catalogue_included_by_two_takes_the_overlays_of_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(
        d,
        "common.toml",
        "[profiles.p]\nurl = \"https://p.example.com\"\n",
    );
    put(d, "a.toml", "include = [\"common.toml\"]\n");
    put(
        d,
        "b.toml",
        "include = [\"common.toml\"]\n[profiles.p]\ntags = [\"b\"]\n",
    );
    let top = put(
        d,
        "profiles.toml",
        "include = [\"a.toml\", \"b.toml\"]\n[defaults]\nusername = \"u\"\n",
    );
    let p = config::load(&top).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.profiles.len(), 1);
    assert_eq!(p.get("p").unwrap().tags, ["b"]);
}
