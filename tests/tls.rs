//! TLS, proxies and redirects against a real HTTPS server: the emulator with a CA it generated.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use sugar_sessions::config::{self, Profile};
use sugar_sessions::emulator::{Emulator, Fault, TlsOptions};
use sugar_sessions::secret::Secret;
use sugar_sessions::sugar::{CertProblem, Client, ErrorKind, NetSettings, SugarError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start_tls(options: TlsOptions) -> Emulator {
    Emulator::start_tls(world(), "127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("TLS emulator starts")
}

/// A directory with the emulator's CA as `certs/ca.pem`, and a profiles file next to it.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(emu: &Emulator) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        if let Some(pem) = emu.ca_pem() {
            std::fs::write(dir.path().join("certs/ca.pem"), pem).unwrap();
        }
        Dir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `[profiles.NAME]` with `body`, written as profiles.toml and loaded the way the program does.
    fn profile(&self, name: &str, body: &str) -> Profile {
        let path = write_profiles(self.path(), &format!("[profiles.{name}]\n{body}\n"));
        let p = config::load(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .profiles
            .remove(0);
        std::sync::Arc::unwrap_or_clone(p)
    }
}

fn body(emu: &Emulator, instance: &str, extra: &str) -> String {
    format!(
        "url = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"custom_api\"\n{extra}",
        emu.url(instance)
    )
}

async fn login(p: &Profile) -> Result<(), SugarError> {
    let client = Client::new(&NetSettings::of(p)).expect("client");
    client
        .login(p, &Secret::new(INTEGRATION_PW))
        .await
        .result
        .map(|_| ())
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(INTEGRATION_PW), "{text}");
}

#[tokio::test]
async fn a_ca_cert_relative_to_the_profiles_file_is_trusted() {
    let emu = start_tls(TlsOptions::default()).await;
    assert!(emu.url("acme").starts_with("https://127.0.0.1:"));
    let dir = Dir::new(&emu);
    let p = dir.profile("acme", &body(&emu, "acme", "ca_cert = \"certs/ca.pem\""));
    let ca = p.ca_cert.as_ref().expect("ca_cert read");
    assert_eq!(ca.path, dir.path().join("certs/ca.pem"));
    assert_eq!(ca.certs.len(), 1);

    let client = Client::new(&NetSettings::of(&p)).unwrap();
    let grant = client
        .login(&p, &Secret::new(INTEGRATION_PW))
        .await
        .result
        .expect("login over TLS");
    let me = client.me(&p, &grant.access_token).await.result.unwrap();
    assert_eq!(me.user_name, "integration");
    // `localhost` is in the certificate too.
    let url = emu.url("acme").replace("127.0.0.1", "localhost");
    let p = dir.profile(
        "acme",
        &format!(
            "url = \"{url}\"\nusername = \"integration\"\nplatform = \"custom_api\"\nca_cert = \"certs/ca.pem\""
        ),
    );
    login(&p).await.expect("login to localhost");
}

#[tokio::test]
async fn an_unknown_ca_fails_naming_the_host_and_suggesting_ca_cert() {
    let emu = start_tls(TlsOptions::default()).await;
    let dir = Dir::new(&emu);
    let p = dir.profile("acme-prod", &body(&emu, "acme", ""));
    let e = login(&p).await.unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Tls {
                cert: Some(CertProblem::UnknownIssuer),
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    let host = format!("127.0.0.1:{}", emu.addr().port());
    assert!(
        text.starts_with(&format!(
            "acme-prod: login failed: TLS failure with {host}: "
        )),
        "{text}"
    );
    assert!(text.contains("unknown certificate authority"), "{text}");
    assert!(
        text.contains(&format!(
            "hint: the certificate of {host} is issued by a CA"
        )) && text.contains("ca_cert = \"/path/to/ca.pem\""),
        "{text}"
    );
    assert_no_secret(&text);
    // Nothing reached Sugar: the handshake failed before a byte of the request was sent.
    assert!(emu.requests().is_empty());

    // Another CA than the one that issued the certificate does not help either.
    let other = start_tls(TlsOptions::default()).await;
    std::fs::write(dir.path().join("other.pem"), other.ca_pem().unwrap()).unwrap();
    let p = dir.profile("acme-prod", &body(&emu, "acme", "ca_cert = \"other.pem\""));
    let e = login(&p).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("issued by a CA this machine does not trust")
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_fails_clearly() {
    let emu = start_tls(TlsOptions::for_names(["wrong.example"])).await;
    let dir = Dir::new(&emu);
    let p = dir.profile("acme", &body(&emu, "acme", "ca_cert = \"certs/ca.pem\""));
    let e = login(&p).await.unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Tls {
                cert: Some(CertProblem::WrongHost),
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("not valid for name"), "{text}");
    assert!(text.contains("wrong.example"), "{text}");
    assert!(
        text.contains(
            "is made out for another host name: check the host name in the profile's url"
        ),
        "{text}"
    );
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn an_expired_certificate_fails_clearly() {
    let emu = start_tls(TlsOptions {
        expired: true,
        ..TlsOptions::default()
    })
    .await;
    let dir = Dir::new(&emu);
    let p = dir.profile("acme", &body(&emu, "acme", "ca_cert = \"certs/ca.pem\""));
    let e = login(&p).await.unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Tls {
                cert: Some(CertProblem::Validity),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("has expired or is not valid yet"));
}

#[tokio::test]
async fn insecure_accepts_any_certificate() {
    let emu = start_tls(TlsOptions::for_names(["wrong.example"])).await;
    let dir = Dir::new(&emu);
    let p = dir.profile("acme", &body(&emu, "acme", "insecure = true"));
    assert!(p.insecure);
    login(&p)
        .await
        .expect("insecure accepts an unknown CA and a wrong host");
    assert_eq!(emu.requests().len(), 1);
    // Never the default, also not through [defaults] unless said so.
    let p = dir.profile("acme", &body(&emu, "acme", ""));
    assert!(!p.insecure);
    let path = write_profiles(
        dir.path(),
        &format!(
            "[defaults]\ninsecure = true\n[profiles.a]\n{}\n[profiles.b]\n{}",
            body(&emu, "acme", ""),
            body(&emu, "acme", "insecure = false")
        ),
    );
    let file = config::load(&path).unwrap();
    assert!(file.get("a").unwrap().insecure);
    assert!(!file.get("b").unwrap().insecure);
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_a_handshake_failure() {
    let plain = start().await;
    let url = plain.url("acme").replace("http://", "https://");
    let p = profile(
        "acme",
        &format!("url = \"{url}\"\nusername = \"integration\"\nplatform = \"custom_api\""),
    );
    let e = login(&p).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Tls { cert: None, .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("check that the url's host and port serve https"),
        "{e}"
    );
}

#[test]
fn a_bad_ca_cert_is_a_located_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "just text\n").unwrap();
    std::fs::write(
        dir.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("a-dir")).unwrap();
    let text = "[defaults]\nca_cert = \"missing.pem\"\n\
                [profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\nca_cert = \"empty.pem\"\n\
                [profiles.b]\nurl = \"https://b.example.com\"\nusername = \"u\"\nca_cert = \"broken.pem\"\n\
                [profiles.c]\nurl = \"https://c.example.com\"\nusername = \"u\"\nca_cert = \"garbage.pem\"\n\
                [profiles.d]\nurl = \"https://d.example.com\"\nusername = \"u\"\nca_cert = \"a-dir\"\n\
                [profiles.e]\nurl = \"https://e.example.com\"\nusername = \"u\"\nca_cert = \"\"\n\
                [profiles.f]\nurl = \"https://f.example.com\"\nusername = \"u\"\nca_cert = 1\n";
    let path = write_profiles(dir.path(), text);
    let err = config::load(&path).unwrap_err().to_string();
    let d = dir.path().display();
    let p = path.display();
    let expected = [
        format!(
            "{p}:2:11: defaults.ca_cert: cannot read the CA certificate file `{d}/missing.pem`: No such file or directory (os error 2)"
        ),
        format!(
            "{p}:6:11: profiles.a.ca_cert: `{d}/empty.pem` holds no certificate: expected PEM text with -----BEGIN CERTIFICATE----- blocks"
        ),
        format!("{p}:10:11: profiles.b.ca_cert: `{d}/broken.pem` is not a valid PEM file: "),
        format!(
            "{p}:14:11: profiles.c.ca_cert: certificate 1 in `{d}/garbage.pem` is not a valid CA certificate: "
        ),
        format!(
            "{p}:18:11: profiles.d.ca_cert: `{d}/a-dir` is not a file: give a PEM file with the CA certificate(s)"
        ),
        format!("{p}:22:11: profiles.e.ca_cert: must not be empty: a file name"),
        format!("{p}:26:11: profiles.f.ca_cert: expected a string (a file name), found an integer"),
    ];
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "{line}\n  should start with\n{want}"
        );
    }
}

#[test]
fn http_to_a_remote_host_needs_allow_http() {
    let remote = "[profiles.lab]\nurl = \"http://sugar-lab.example.com\"\nusername = \"u\"\n";
    let e = config::parse(remote, Path::new("p.toml")).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "p.toml:2:7: profiles.lab.url: http:// to `sugar-lab.example.com` would send the \
         password unencrypted; use https:// or set allow_http = true"
    );
    let ok = config::parse(&format!("{remote}allow_http = true\n"), Path::new("p.toml")).unwrap();
    assert!(ok.profiles[0].allow_http);
}

/// A listener that counts connections and never answers.
async fn counting_listener() -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            *seen.lock().unwrap() += 1;
            drop(stream);
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_nothing_is_sent_there() {
    let emu = start_tls(TlsOptions::default()).await;
    let dir = Dir::new(&emu);
    let (sso, connections) = counting_listener().await;
    emu.set_fault(
        "acme",
        Some(Fault::Redirect(format!("https://{sso}/saml/login"))),
    );
    let p = dir.profile("acme", &body(&emu, "acme", "ca_cert = \"certs/ca.pem\""));
    let e = login(&p).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Redirect {
            status: 302,
            location: Some(format!("https://{sso}/saml/login"))
        }
    );
    assert!(
        e.to_string()
            .contains("the server redirected to 127.0.0.1 (an SSO login page or a proxy?); nothing was sent there"),
        "{e}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(*connections.lock().unwrap(), 0, "the redirect was followed");
    assert_eq!(emu.requests().len(), 1);
}

/// What a test proxy saw: the targets it was asked to connect to.
type Seen = Arc<Mutex<Vec<String>>>;

/// Connects `target` (`host:port`; `sugar.test` is this machine, as a name only the proxy knows).
async fn connect_target(target: &str) -> std::io::Result<TcpStream> {
    let (host, port) = target.rsplit_once(':').unwrap();
    let host = if host == "sugar.test" {
        "127.0.0.1"
    } else {
        host
    };
    TcpStream::connect((host, port.parse::<u16>().unwrap())).await
}

/// A minimal SOCKS5 proxy (no authentication, CONNECT only), as `ssh -D` offers.
async fn socks5_proxy() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                client.read_exact(&mut head).await?;
                let mut methods = vec![0u8; head[1] as usize];
                client.read_exact(&mut methods).await?;
                client.write_all(&[5, 0]).await?;
                let mut req = [0u8; 4];
                client.read_exact(&mut req).await?;
                let host = match req[3] {
                    1 => {
                        let mut ip = [0u8; 4];
                        client.read_exact(&mut ip).await?;
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    3 => {
                        let mut len = [0u8; 1];
                        client.read_exact(&mut len).await?;
                        let mut name = vec![0u8; len[0] as usize];
                        client.read_exact(&mut name).await?;
                        String::from_utf8_lossy(&name).into_owned()
                    }
                    _ => return Ok::<(), std::io::Error>(()),
                };
                let mut port = [0u8; 2];
                client.read_exact(&mut port).await?;
                let target = format!("{host}:{}", u16::from_be_bytes(port));
                log.lock().unwrap().push(target.clone());
                let mut upstream = connect_target(&target).await?;
                client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                Ok(())
            });
        }
    });
    (addr, seen)
}

/// A minimal HTTP proxy that only tunnels (CONNECT), as corporate proxies do for https.
async fn connect_proxy() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    client.read_exact(&mut byte).await?;
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let first = head.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(first.clone());
                let Some(target) = first
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                else {
                    client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                        .await?;
                    return Ok(());
                };
                let mut upstream = connect_target(target).await?;
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                Ok::<(), std::io::Error>(())
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_socks5h_proxy_resolves_names_the_client_cannot() {
    // `sugar.test` resolves nowhere but in the proxy: only socks5h (remote resolution) reaches it.
    let emu = start_tls(TlsOptions::for_names(["sugar.test"])).await;
    let dir = Dir::new(&emu);
    let (proxy, seen) = socks5_proxy().await;
    let url = format!("https://sugar.test:{}/acme", emu.addr().port());
    let p = dir.profile(
        "tunnel",
        &format!(
            "url = \"{url}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n\
             platform = \"custom_api\"\nca_cert = \"certs/ca.pem\"\nproxy = \"socks5h://{proxy}\""
        ),
    );
    assert_eq!(
        p.proxy
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string()),
        Some(format!("socks5h://{proxy}"))
    );
    login(&p).await.expect("login through the SOCKS proxy");
    assert_eq!(
        *seen.lock().unwrap(),
        [format!("sugar.test:{}", emu.addr().port())]
    );
}

#[tokio::test]
async fn an_http_proxy_tunnels_https() {
    let emu = start_tls(TlsOptions::default()).await;
    let dir = Dir::new(&emu);
    let (proxy, seen) = connect_proxy().await;
    let p = dir.profile(
        "corp",
        &body(
            &emu,
            "acme",
            &format!("ca_cert = \"certs/ca.pem\"\nproxy = \"http://{proxy}\""),
        ),
    );
    login(&p).await.expect("login through the HTTP proxy");
    assert_eq!(
        *seen.lock().unwrap(),
        [format!("CONNECT 127.0.0.1:{} HTTP/1.1", emu.addr().port())]
    );
}

#[tokio::test]
async fn a_proxy_that_is_down_is_a_per_profile_error() {
    let emu = start_tls(TlsOptions::default()).await;
    let dir = Dir::new(&emu);
    let port = refused_addr().port();
    let p = dir.profile(
        "corp",
        &body(
            &emu,
            "acme",
            &format!("ca_cert = \"certs/ca.pem\"\nproxy = \"http://127.0.0.1:{port}\""),
        ),
    );
    let e = login(&p).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "corp: login failed: network failure with 127.0.0.1:{}: the proxy \
             http://127.0.0.1:{port} refused the connection: is it running? (check the profile's \
             proxy)",
            emu.addr().port()
        )
    );
    // A SOCKS proxy that is down, likewise; and one that cannot reach the instance.
    let p = dir.profile(
        "tunnel",
        &body(
            &emu,
            "acme",
            &format!("ca_cert = \"certs/ca.pem\"\nproxy = \"socks5h://127.0.0.1:{port}\""),
        ),
    );
    let text = login(&p).await.unwrap_err().to_string();
    assert!(
        text.contains(&format!(
            "network failure with 127.0.0.1:{}: through the proxy socks5h://127.0.0.1:{port}: \
             error connecting to socks proxy",
            emu.addr().port()
        )),
        "{text}"
    );
    let (proxy, _) = socks5_proxy().await;
    let p = dir.profile(
        "tunnel",
        &format!(
            "url = \"https://127.0.0.1:{port}/acme\"\nusername = \"u\"\nproxy = \"socks5h://{proxy}\""
        ),
    );
    let text = login(&p).await.unwrap_err().to_string();
    assert!(
        text.starts_with(&format!("tunnel: login failed: network failure with 127.0.0.1:{port}: through the proxy socks5h://{proxy}: ")),
        "{text}"
    );
    assert!(emu.requests().is_empty());
}

#[test]
fn proxy_urls_are_checked_without_quoting_them() {
    let base = "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n";
    let err = |proxy: &str| {
        config::parse(&format!("{base}proxy = \"{proxy}\"\n"), Path::new("p.toml")).unwrap_err()[0]
            .to_string()
    };
    assert_eq!(
        err("ftp://user:Pw-Secret@proxy:21"),
        "p.toml:4:9: profiles.a.proxy: unsupported proxy scheme `ftp:`: use http://, https://, \
         socks5:// or socks5h:// (socks5h resolves host names through the proxy, as an `ssh -D` \
         tunnel needs)"
    );
    assert!(err("not a url").starts_with("p.toml:4:9: profiles.a.proxy: not a valid proxy URL"));
    assert!(
        err("http://user:Pw-Secret@proxy:3128/path")
            .contains("the proxy URL must be only scheme, host and port")
    );
    assert!(!err("http://user:Pw-Secret@proxy:3128/path").contains("Pw-Secret"));
    for ok in [
        "http://proxy:3128",
        "https://proxy.example.com",
        "socks5://127.0.0.1:1080",
        "socks5h://127.0.0.1:1080/",
    ] {
        config::parse(&format!("{base}proxy = \"{ok}\"\n"), Path::new("p.toml"))
            .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
}

#[test]
fn profiles_share_a_client_only_when_every_network_setting_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let emu_ca = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            start_tls(TlsOptions::default())
                .await
                .ca_pem()
                .unwrap()
                .to_string()
        })
    };
    std::fs::write(dir.path().join("ca.pem"), emu_ca).unwrap();
    let text = "[defaults]\nusername = \"u\"\n\
        [profiles.a]\nurl = \"https://a.example.com\"\n\
        [profiles.b]\nurl = \"https://b.example.com\"\n\
        [profiles.c]\nurl = \"https://c.example.com\"\nca_cert = \"ca.pem\"\n\
        [profiles.d]\nurl = \"https://d.example.com\"\ninsecure = true\n\
        [profiles.e]\nurl = \"https://e.example.com\"\nproxy = \"socks5h://127.0.0.1:1080\"\n\
        [profiles.f]\nurl = \"https://f.example.com\"\ntimeout_s = 2\n\
        [profiles.g]\nurl = \"https://g.example.com\"\nca_cert = \"ca.pem\"\n";
    let file = config::load(&write_profiles(dir.path(), text)).unwrap();
    let net = |name: &str| NetSettings::of(file.get(name).unwrap());
    assert_eq!(net("a"), net("b"));
    assert_eq!(net("a"), NetSettings::default());
    assert_eq!(net("c"), net("g"));
    let distinct: std::collections::HashSet<NetSettings> = ["a", "b", "c", "d", "e", "f", "g"]
        .into_iter()
        .map(net)
        .collect();
    assert_eq!(distinct.len(), 5);
}

/// The binary: `SSL_CERT_FILE` replaces the system's CAs, as OpenSSL-based tools do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_honours_ssl_cert_file_and_explains_an_unknown_ca() {
    let emu = start_tls(TlsOptions::default()).await;
    let dir = Dir::new(&emu);
    let profiles = write_profiles(
        dir.path(),
        &format!("[profiles.acme-prod]\n{}", body(&emu, "acme", "")),
    );
    let state = dir.path().join("state");
    let run = |ssl_cert_file: Option<PathBuf>| {
        let mut c = assert_cmd::Command::cargo_bin("sugar-sessions").unwrap();
        c.arg("--profiles")
            .arg(&profiles)
            .arg("--state-dir")
            .arg(&state)
            .args(["login", "acme-prod"])
            .env_remove("SUGAR_SESSIONS_LOG")
            .env_remove("SSL_CERT_DIR");
        match ssl_cert_file {
            Some(f) => c.env("SSL_CERT_FILE", f),
            None => c.env_remove("SSL_CERT_FILE"),
        };
        async move {
            let out = tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap(),
            )
        }
    };
    // As the only trusted CA, another one (so that the outcome does not depend on this machine's
    // CA bundle): the emulator's certificate is from an unknown CA.
    let other = start_tls(TlsOptions::default()).await;
    std::fs::write(dir.path().join("other.pem"), other.ca_pem().unwrap()).unwrap();
    let (code, text) = run(Some(dir.path().join("other.pem"))).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.starts_with(&format!(
            "acme-prod: login failed: TLS failure with 127.0.0.1:{}",
            emu.addr().port()
        )),
        "{text}"
    );
    assert!(text.contains("set ca_cert = "), "{text}");
    assert_no_secret(&text);

    let (code, text) = run(Some(dir.path().join("certs/ca.pem"))).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("acme-prod: logged in"), "{text}");
}

/// A machine with no CA certificates at all (a minimal container): plain `http://` instances
/// still work, directly or through a SOCKS proxy, since nothing there needs them; an `https://` one says what is missing, and one
/// with its own `ca_cert` works on that alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_systems_ca_certificates_only_https_needs_them() {
    let plain = start().await;
    let tls = start_tls(TlsOptions::default()).await;
    let (socks, seen) = socks5_proxy().await;
    let dir = Dir::new(&tls);
    std::fs::write(dir.path().join("none.pem"), "").unwrap();
    let profiles = write_profiles(
        dir.path(),
        &format!(
            "[profiles.plain]\n{}\n[profiles.plain-socks]\n{}\n[profiles.tls-system]\n{}\n[profiles.tls-own]\n{}",
            body(&plain, "acme", ""),
            body(&plain, "acme", &format!("proxy = \"socks5://{socks}\"")),
            body(&tls, "acme", ""),
            body(&tls, "acme", "ca_cert = \"certs/ca.pem\"")
        ),
    );
    let mut c = assert_cmd::Command::cargo_bin("sugar-sessions").unwrap();
    c.arg("--profiles")
        .arg(&profiles)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["login", "--all", "--yes"])
        .env_remove("SUGAR_SESSIONS_LOG")
        .env_remove("SSL_CERT_DIR")
        .env("SSL_CERT_FILE", dir.path().join("none.pem"));
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .to_string()
    };
    assert!(line("plain").starts_with("plain: logged in"), "{text}");
    // Through a proxy that is not TLS either.
    assert!(
        line("plain-socks").starts_with("plain-socks: logged in"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "{text}");
    assert!(line("tls-own").starts_with("tls-own: logged in"), "{text}");
    let failed = line("tls-system");
    assert!(
        failed.starts_with("tls-system: login failed: cannot read this machine's CA certificates")
            && failed.contains("SSL_CERT_FILE"),
        "{text}"
    );
    assert_no_secret(&text);
}

#[test]
fn list_marks_insecure_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(
        dir.path(),
        "[profiles.lab]\nurl = \"https://lab.example.com\"\nusername = \"u\"\ninsecure = true\n\
         [profiles.prod]\nurl = \"https://prod.example.com\"\nusername = \"u\"\n",
    );
    let list = |json: bool| {
        let mut c = assert_cmd::Command::cargo_bin("sugar-sessions").unwrap();
        c.arg("--profiles")
            .arg(&profiles)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("list")
            .env_remove("SUGAR_SESSIONS_LOG");
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let text = list(false);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("lab ") && lines[0].ends_with("  INSECURE (certificates not checked)"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("prod ") && !lines[1].contains("INSECURE"),
        "{text}"
    );
    let rows: serde_json::Value = serde_json::from_str(&list(true)).unwrap();
    assert_eq!(rows[0]["insecure"], true);
    assert_eq!(rows[1]["insecure"], false);
}
