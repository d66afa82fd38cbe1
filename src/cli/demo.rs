//! The emulator command, and the pieces of the demo: an emulator with the demo instances, and a
//! private file for its profiles.

use super::Usage;
use crate::exit;
use std::io::Write;
use std::path::{Path, PathBuf};

pub async fn start_demo_emulator(port: u16) -> Result<crate::emulator::Emulator, Usage> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    crate::emulator::Emulator::start(crate::emulator::demo_config(), addr)
        .await
        .map_err(|e| {
            Usage(format!(
                "sugar-sessions: cannot start the emulator on {addr}: {e}"
            ))
        })
}

pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    write_private_file(path, text, true)
}

/// Writes `text` to a new file at `path` (mode 0600); an existing file is replaced only when
/// `replace` says so (otherwise the write fails with `AlreadyExists`).
fn write_private_file(path: &Path, text: &str, replace: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path)?.write_all(text.as_bytes())
}

fn exists_refusal(path: &Path) -> Usage {
    Usage(format!(
        "sugar-sessions: {} exists: pass --force to replace it, or name another file",
        path.display()
    ))
}

pub(super) async fn emulator(
    port: u16,
    write_profiles: Option<&Path>,
    force: bool,
    tls: bool,
) -> Result<i32, Usage> {
    // Refused before anything starts: a profiles file of one's own is not overwritten by accident.
    if let Some(path) = write_profiles
        && !force
        && std::fs::symlink_metadata(path).is_ok()
    {
        return Err(exists_refusal(path));
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let config = crate::emulator::demo_config();
    let emu = if tls {
        let options = crate::emulator::TlsOptions::default();
        crate::emulator::Emulator::start_tls(config.clone(), addr, options).await
    } else {
        crate::emulator::Emulator::start(config.clone(), addr).await
    }
    .map_err(|e| {
        Usage(format!(
            "sugar-sessions: cannot start the emulator on {addr}: {e}"
        ))
    })?;
    // With TLS, the CA's certificate goes where a profiles file can name it.
    let mut _ca_dir = None;
    let ca_path = match emu.ca_pem() {
        None => None,
        Some(pem) => {
            let dir = match write_profiles.and_then(Path::parent) {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                Some(_) => PathBuf::from("."),
                None => {
                    let tmp = tempfile::Builder::new()
                        .prefix("sugar-sessions-emulator-")
                        .tempdir()
                        .map_err(|e| {
                            Usage(format!(
                                "sugar-sessions: cannot create a temporary directory: {e}"
                            ))
                        })?;
                    let path = tmp.path().to_path_buf();
                    _ca_dir = Some(tmp);
                    path
                }
            };
            let path = dir.join("emulator-ca.pem");
            std::fs::write(&path, pem).map_err(|e| {
                Usage(format!(
                    "sugar-sessions: cannot write {}: {e}",
                    path.display()
                ))
            })?;
            Some(std::fs::canonicalize(&path).unwrap_or(path))
        }
    };
    println!(
        "Sugar emulator listening on {}://{}",
        emu.scheme(),
        emu.addr()
    );
    if let Some(ca) = &ca_path {
        println!(
            "  its CA certificate: {} (name it in ca_cert, or pass it to curl --cacert)",
            ca.display()
        );
    }
    for inst in &config.instances {
        let mode = if inst.maintenance {
            "  (maintenance mode)"
        } else {
            ""
        };
        println!("  instance {:14} {}{mode}", inst.name, emu.url(&inst.name));
        for u in &inst.users {
            println!(
                "    user {:14} password {:14}{}",
                u.user_name,
                u.password,
                if u.admin { " (admin)" } else { "" }
            );
        }
        println!(
            "    platforms: base, mobile, portal, {}",
            inst.platforms.join(", ")
        );
    }
    if let Some(path) = write_profiles {
        let mut text = crate::emulator::demo_profiles_toml(&emu);
        if let Some(ca) = &ca_path {
            let line = format!(
                "[defaults]\nca_cert = {}\n",
                toml::Value::from(ca.display().to_string())
            );
            text = text.replacen("[defaults]\n", &line, 1);
        }
        write_private_file(path, &text, force).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                exists_refusal(path)
            } else {
                Usage(format!(
                    "sugar-sessions: cannot write {}: {e}",
                    path.display()
                ))
            }
        })?;
        println!(
            "Wrote a profiles file for these users to {}",
            path.display()
        );
        println!(
            "Try: sugar-sessions --profiles {} login --all",
            path.display()
        );
    }
    println!("Ctrl-C stops the emulator.");
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    emu.shutdown().await;
    Ok(exit::OK)
}
