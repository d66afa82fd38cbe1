//! Shared by the benchmarks: an emulator fleet in a separate process, profiles files that point at it,
//! and running the real binary with its CPU time and peak RSS measured (`wait4`).
#![allow(dead_code)]

/// The real binary in a pseudo-terminal: the integration tests' harness, the only one.
#[path = "../../tests/common/pty.rs"]
pub mod pty;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The real binary, built by `cargo bench` with the bench profile (optimised).
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sugar-sessions"))
}

/// The binary on a benchmark's world: `--profiles FILE --state-dir DIR ARGS`, with no log level
/// and no profiles file or state directory from the environment.
pub fn on_world(profiles: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("--profiles")
        .arg(profiles)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SUGAR_SESSIONS_PROFILES")
        .env_remove("SUGAR_SESSIONS_STATE_DIR");
    cmd
}

/// The environment variable that turns a bench binary into the emulator fleet server.
pub const SERVER_ENV: &str = "SUGAR_BENCH_SERVER";

/// Where the fleet server writes the PEM bundle of its emulators' CAs (HTTPS only).
pub const CA_ENV: &str = "SUGAR_BENCH_CA_FILE";

/// The password of every benchmark user.
pub const PASSWORD: &str = "Bench-Pw-5e1f";

/// What the fleet server serves: `hosts` emulators on 127.0.0.1 ..= 127.0.0.{hosts}, each with
/// `users_per_host` users `u{NNNN}` of instance `crm`, `latency` added to every answer.
#[derive(Clone, Copy, Debug)]
pub struct Fleet {
    pub hosts: usize,
    pub users_per_host: usize,
    pub latency: Duration,
    pub tls: bool,
}

impl Fleet {
    fn spec(&self) -> String {
        format!(
            "{} {} {} {}",
            self.hosts,
            self.users_per_host,
            self.latency.as_millis(),
            u8::from(self.tls)
        )
    }

    fn parse(spec: &str) -> Fleet {
        let v: Vec<u64> = spec
            .split_whitespace()
            .map(|s| s.parse().expect("fleet spec"))
            .collect();
        Fleet {
            hosts: v[0] as usize,
            users_per_host: v[1] as usize,
            latency: Duration::from_millis(v[2]),
            tls: v[3] != 0,
        }
    }

    pub fn profiles(&self) -> usize {
        self.hosts * self.users_per_host
    }

    /// The loopback address of host `h` (0-based): 127.0.0.{h+1}.
    pub fn ip(h: usize) -> String {
        assert!(h < 254, "at most 254 loopback hosts");
        format!("127.0.0.{}", h + 1)
    }
}

/// Profile `i` is user `u{i:04}` on host `i / users_per_host` (grouped by instance, as a real file
/// grouped by client would be, so that the per-host bound matters).
pub fn user_name(i: usize) -> String {
    format!("u{i:04}")
}

/// If this process was started as the fleet server, serve until stdin closes and return true.
pub fn serve_if_asked() -> bool {
    let Ok(spec) = std::env::var(SERVER_ENV) else {
        return false;
    };
    let fleet = Fleet::parse(&spec);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        use sugar_sessions::emulator::{
            Emulator, EmulatorConfig, InstanceConfig, TlsOptions, UserConfig,
        };
        let mut emulators = Vec::with_capacity(fleet.hosts);
        let mut line = String::from("READY");
        let mut bundle = String::new();
        for h in 0..fleet.hosts {
            let mut inst = InstanceConfig::new("crm").with_platform("custom_api");
            for k in 0..fleet.users_per_host {
                let i = h * fleet.users_per_host + k;
                inst = inst.with_user(UserConfig::user(&user_name(i), PASSWORD, "Bench User"));
            }
            inst.latency = fleet.latency;
            let addr: std::net::SocketAddr = format!("{}:0", Fleet::ip(h)).parse().unwrap();
            let config = EmulatorConfig {
                instances: vec![inst],
            };
            let started = if fleet.tls {
                let tls = TlsOptions::for_names([Fleet::ip(h)]);
                Emulator::start_tls(config, addr, tls).await
            } else {
                Emulator::start(config, addr).await
            };
            let emu = match started {
                Ok(emu) => emu,
                Err(e) => {
                    println!("FAILED emulator on {addr}: {e}");
                    return;
                }
            };
            line.push_str(&format!(" {}", emu.addr().port()));
            bundle.push_str(emu.ca_pem().unwrap_or(""));
            emulators.push(emu);
        }
        if let Ok(path) = std::env::var(CA_ENV) {
            write_private(Path::new(&path), &bundle);
        }
        println!("{line}");
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
        drop(emulators);
    });
    true
}

/// A running fleet server process; stopped on drop.
pub struct FleetServer {
    pub fleet: Fleet,
    /// The port of each host.
    pub ports: Vec<u16>,
    /// The PEM bundle of the emulators' CAs (HTTPS only).
    pub ca_file: Option<PathBuf>,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl FleetServer {
    /// Starts the fleet; with TLS, its CA bundle is written to `ca_file`.
    pub fn start(fleet: Fleet, ca_file: &Path) -> std::io::Result<FleetServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(SERVER_ENV, fleet.spec())
            .env(CA_ENV, ca_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        let Some(ports) = line.trim().strip_prefix("READY") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "the fleet server did not start: {line:?}"
            )));
        };
        let ports = ports
            .split_whitespace()
            .map(|p| p.parse().expect("port"))
            .collect();
        Ok(FleetServer {
            fleet,
            ports,
            ca_file: fleet.tls.then(|| ca_file.to_path_buf()),
            child,
            stdin,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, h: usize) -> String {
        let scheme = if self.fleet.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}/crm", Fleet::ip(h), self.ports[h])
    }

    /// A profiles file for the first `n` profiles of the fleet.
    pub fn profiles_toml(&self, n: usize, max_concurrency: usize, max_per_host: usize) -> String {
        let mut out = String::new();
        out.push_str("[defaults]\nplatform = \"custom_api\"\n");
        out.push_str(&format!(
            "max_concurrency = {max_concurrency}\nmax_per_host = {max_per_host}\n"
        ));
        out.push_str(&format!("password = \"{PASSWORD}\"\n"));
        if let Some(ca) = &self.ca_file {
            out.push_str(&format!("ca_cert = \"{}\"\n", ca.display()));
        }
        for i in 0..n.min(self.fleet.profiles()) {
            let h = i / self.fleet.users_per_host;
            out.push_str(&format!(
                "\n[profiles.p{i:04}]\nurl = \"{}\"\nusername = \"{}\"\ntags = [\"bench\", \"h{h}\"]\n",
                self.url(h),
                user_name(i)
            ));
        }
        out
    }
}

impl Drop for FleetServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a private (0600) file: profiles files with a plain password must not be readable by others.
pub fn write_private(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("write file");
    f.write_all(text.as_bytes()).expect("write file");
}

/// What one run of a child process cost.
#[derive(Clone, Debug)]
pub struct Measured {
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    /// Peak resident set size (`ru_maxrss`, which is the child's VmHWM).
    pub max_rss_kib: u64,
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Measured {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// The environment variable that makes a bench binary the measuring helper of [`measure`]: it
/// runs the command of its arguments and writes the command's figures to the file this names.
pub const MEASURE_ENV: &str = "SUGAR_BENCH_MEASURE_TO";

/// Runs `cmd` to completion, reading its output, and measures it: wall time, CPU time and peak
/// RSS of the command alone.
///
/// Through a helper process (this bench binary again, see [`measure_if_asked`]) that starts the
/// command and `wait4`s it: Linux gives a child the peak RSS of the process it was forked from as
/// a floor (exec records the old address space's high-water mark), so a command started by a
/// bench holding a 10,000-profile world in memory would report the bench's peak as its own. The
/// helper is small, and measures the wall time itself (its own start-up is not counted).
pub fn measure(cmd: Command) -> Measured {
    let report = tempfile::NamedTempFile::new().expect("report file");
    let mut helper = Command::new(std::env::current_exe().expect("the bench binary"));
    helper
        .env(MEASURE_ENV, report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => helper.env(key, v),
            None => helper.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        helper.current_dir(dir);
    }
    helper
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = helper.output().expect("run the measuring helper");
    let text = std::fs::read_to_string(report.path()).expect("the helper's report");
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().expect("a figure"))
        .collect();
    assert_eq!(
        f.len(),
        5,
        "the helper's report: {text:?}; its stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Measured {
        status: f[0] as i32,
        wall: Duration::from_nanos(f[1]),
        user: Duration::from_micros(f[2]),
        sys: Duration::from_micros(f[3]),
        max_rss_kib: f[4],
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// When this process is [`measure`]'s helper: runs the command of the arguments with this
/// process's standard streams, writes `STATUS WALL_NS USER_US SYS_US MAXRSS_KIB` of it to the
/// file [`MEASURE_ENV`] names, and returns true (the bench's `main` then returns).
pub fn measure_if_asked() -> bool {
    let Some(report) = std::env::var_os(MEASURE_ENV) else {
        return false;
    };
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect("a command to measure");
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove(MEASURE_ENV);
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn the measured command");
    let pid = child.id() as libc::pid_t;
    let (status, ru) = wait4(pid);
    let wall = started.elapsed();
    std::mem::forget(child); // reaped by wait4 already
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    std::fs::write(
        report,
        format!(
            "{status} {} {} {} {}",
            wall.as_nanos(),
            micros(ru.ru_utime),
            micros(ru.ru_stime),
            ru.ru_maxrss
        ),
    )
    .expect("write the report");
    true
}

/// Waits for `pid` and returns its exit status (128+signal when killed) and resource usage.
pub fn wait4(pid: libc::pid_t) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting for our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            panic!("wait4: {}", std::io::Error::last_os_error());
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, ru)
}

/// `VmHWM` (peak RSS) of a live process, in KiB.
pub fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One line of a figures table: name, figure, target, verdict.
pub fn report(name: &str, figure: String, target: &str, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "ok",
        Some(false) => "MISSED",
        None => "",
    };
    println!("  {name:<52} {figure:>22}   target {target:<18} {verdict}");
}

/// Facts about the machine, for the record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    // Other work on the machine moves these figures: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "{cpus} CPUs ({cpu}), {:.1} GiB memory, load average {load} at the start",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// A profiles file of `n` profiles on `hosts` made-up HTTPS hosts and a token cache where every one
/// has an active session (as after a bulk login), written through the crate's own store. No network.
pub fn full_cache_world(dir: &Path, n: usize, hosts: usize) -> (PathBuf, PathBuf) {
    use sugar_sessions::store::{Cache, Store};
    let profiles = dir.join("profiles.toml");
    let mut text =
        String::from("[defaults]\nplatform = \"custom_api\"\npassword_env = \"BENCH_PW\"\n");
    let now = chrono::Utc::now();
    let at = |secs: i64| {
        (now + chrono::TimeDelta::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut entries = serde_json::Map::new();
    for i in 0..n {
        let h = i % hosts.max(1);
        let url = format!("https://client{h:03}.sugarondemand.com");
        let tags = if h.is_multiple_of(5) {
            "\"prod\", \"fleet\""
        } else {
            "\"sandbox\", \"fleet\""
        };
        text.push_str(&format!(
            "\n[profiles.p{i:05}]\nurl = \"{url}\"\nusername = \"{}\"\ntags = [{tags}]\n",
            user_name(i)
        ));
        entries.insert(
            format!("{url}|{}|custom_api|sugar", user_name(i)),
            serde_json::json!({
                "session": {
                    "access_token": uuid::Uuid::new_v4().to_string(),
                    "refresh_token": uuid::Uuid::new_v4().to_string(),
                    "download_token": uuid::Uuid::new_v4().to_string(),
                    "obtained_at": at(-60),
                    "expires_at": at(3540 - (i as i64 % 600)),
                    "refresh_expires_at": at(1_209_540),
                    "platform": "custom_api",
                    "username": user_name(i),
                    "url": url,
                },
                "updated_at": at(-60),
            }),
        );
    }
    write_private(&profiles, &text);
    let cache: Cache =
        serde_json::from_value(serde_json::json!({"version": 2, "sessions": entries}))
            .expect("the cache format this benchmark writes is the crate's");
    let state = dir.join("state");
    let store = Store::open(&state).expect("state dir");
    store.update(|c| *c = cache).expect("write the cache");
    (profiles, state)
}
