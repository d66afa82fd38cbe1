//! The real binary in a pseudo-terminal: the program on the slave side (as its controlling
//! terminal, or without one), everything it writes collected with the time it arrived, the master
//! side closable at will (an SSH connection that dropped), the exit status and CPU time from
//! `wait4(2)`, and a small VT parser ([`Screen`]) for what a ratatui + crossterm program writes.
//!
//! Descriptors are opened close-on-exec, so that a pty of one test never leaks into the program
//! of another test running at the same time (a leaked master would keep the terminal alive).
//!
//! The benchmarks use it too (`benches/common/mod.rs` includes this file): for figures,
//! [`Pty::wait_until`] follows the screen piece by piece and says when it first showed something,
//! and [`Pty::bytes_written`] counts the output. Each binary uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// A minimal terminal.
// ---------------------------------------------------------------------------------------------

/// The terminal state after feeding it everything the program wrote.
pub struct Screen {
    grid: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// Private modes by number (`?1049`, `?25`, `?2004`), last value set.
    pub modes: HashMap<u32, bool>,
    /// The end of what [`Screen::feed`] was given when it cuts an escape sequence or a UTF-8
    /// character short: kept for the next feed.
    pending: Vec<u8>,
}

impl Screen {
    /// A blank screen of `rows` x `cols`.
    pub fn new(rows: u16, cols: u16) -> Screen {
        let (h, w) = (usize::from(rows), usize::from(cols));
        Screen {
            grid: vec![vec![' '; w]; h],
            row: 0,
            col: 0,
            modes: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// The screen after all of `bytes`: an escape sequence its end cuts short is dropped, a
    /// character cut short is shown as U+FFFD.
    pub fn parse(bytes: &[u8], rows: u16, cols: u16) -> Screen {
        let mut s = Screen::new(rows, cols);
        s.feed(bytes);
        let rest = std::mem::take(&mut s.pending);
        s.run(&String::from_utf8_lossy(&rest), true);
        s
    }

    /// Feeds the next bytes the program wrote, as they arrive: an escape sequence or a character
    /// that their end cuts short waits for the rest. Feeding the output piece by piece gives the
    /// screen [`Screen::parse`] gives for the whole.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        let whole = whole_chars(&data);
        let text = String::from_utf8_lossy(&data[..whole]);
        if let Some(cut) = self.run(&text, false) {
            self.pending = text[cut..].as_bytes().to_vec();
        }
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// Applies `text`. Unless it is the `last` of the output, stops at an escape sequence that
    /// its end cuts short and returns where that starts.
    fn run(&mut self, text: &str, last: bool) -> Option<usize> {
        let (h, w) = (self.grid.len(), self.grid[0].len());
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '\x1b' => {
                    let whole = match chars.next().map(|(_, c)| c) {
                        Some('[') => {
                            let mut params = String::new();
                            let mut fin = None;
                            for (_, p) in chars.by_ref() {
                                if ('\x40'..='\x7e').contains(&p) {
                                    fin = Some(p);
                                    break;
                                }
                                params.push(p);
                            }
                            if let Some(f) = fin {
                                self.csi(&params, f);
                            }
                            fin.is_some()
                        }
                        Some(']') => {
                            // OSC: up to BEL or ESC \.
                            let mut ended = false;
                            while let Some((_, p)) = chars.next() {
                                if p == '\x07'
                                    || (p == '\x1b' && chars.next_if(|&(_, c)| c == '\\').is_some())
                                {
                                    ended = true;
                                    break;
                                }
                            }
                            ended
                        }
                        Some('(') | Some(')') => chars.next().is_some(),
                        Some(_) => true,
                        None => false,
                    };
                    if !whole && !last {
                        return Some(at);
                    }
                }
                '\r' => self.col = 0,
                '\n' => self.row = (self.row + 1).min(h - 1),
                '\x08' => self.col = self.col.saturating_sub(1),
                c if c.is_control() => {}
                c => {
                    if self.col < w {
                        self.grid[self.row][self.col] = c;
                    }
                    self.col += 1;
                }
            }
        }
        None
    }

    fn csi(&mut self, params: &str, fin: char) {
        if let Some(private) = params.strip_prefix('?') {
            for p in private.split(';').filter_map(|p| p.parse::<u32>().ok()) {
                let on = fin == 'h';
                if p == 1049 && on {
                    self.clear();
                }
                self.modes.insert(p, on);
            }
            return;
        }
        let nums: Vec<usize> = params.split(';').map(|p| p.parse().unwrap_or(0)).collect();
        let n =
            |i: usize, default: usize| nums.get(i).copied().filter(|v| *v != 0).unwrap_or(default);
        let (h, w) = (self.grid.len(), self.grid[0].len());
        match fin {
            'H' | 'f' => {
                self.row = (n(0, 1) - 1).min(h - 1);
                self.col = (n(1, 1) - 1).min(w - 1);
            }
            'A' => self.row = self.row.saturating_sub(n(0, 1)),
            'B' => self.row = (self.row + n(0, 1)).min(h - 1),
            'C' => self.col = (self.col + n(0, 1)).min(w - 1),
            'D' => self.col = self.col.saturating_sub(n(0, 1)),
            'G' => self.col = (n(0, 1) - 1).min(w - 1),
            'J' => match nums.first().copied().unwrap_or(0) {
                2 | 3 => self.clear(),
                0 => {
                    for c in self.col..w {
                        self.grid[self.row][c] = ' ';
                    }
                    for r in self.row + 1..h {
                        self.grid[r].fill(' ');
                    }
                }
                _ => {}
            },
            'K' => {
                for c in self.col.min(w)..w {
                    self.grid[self.row][c] = ' ';
                }
            }
            _ => {}
        }
    }

    fn clear(&mut self) {
        for r in &mut self.grid {
            r.fill(' ');
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.grid
            .iter()
            .map(|r| r.iter().collect::<String>())
            .collect()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    pub fn line_with(&self, needle: &str) -> Option<String> {
        self.lines().into_iter().find(|l| l.contains(needle))
    }

    /// Some line shows `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.line_with(needle).is_some()
    }
}

/// How much of `data` is whole characters: all of it but a UTF-8 sequence that its end cuts short.
fn whole_chars(data: &[u8]) -> usize {
    for back in 1..=data.len().min(3) {
        let start = data.len() - back;
        // The last byte that is not a continuation byte: does a character start there and not end?
        if data[start] & 0xc0 != 0x80 {
            return match std::str::from_utf8(&data[start..]) {
                Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => start,
                _ => data.len(),
            };
        }
    }
    data.len()
}

// ---------------------------------------------------------------------------------------------
// The program in a pty.
// ---------------------------------------------------------------------------------------------

/// How the program ended, from `wait4(2)`.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The raw wait status.
    pub status: libc::c_int,
    /// When the test saw it end.
    pub at: Instant,
    /// User plus system CPU time over the program's whole life.
    pub cpu: Duration,
}

impl Exit {
    /// The exit code, when it exited (rather than being killed by a signal).
    pub fn code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }
}

pub struct Pty {
    pub rows: u16,
    pub cols: u16,
    /// Just before the program was started.
    pub started: Instant,
    /// The test's own child, reaped with `wait4`: the program, or the shell it runs under
    /// ([`Pty::spawn_job`]). The pty's session has this id.
    child: libc::pid_t,
    /// The program.
    program: libc::pid_t,
    /// The master side; `None` once closed. The reader thread holds the other reference.
    master: Option<Arc<OwnedFd>>,
    /// A slave descriptor kept by the test, to read the line discipline's settings.
    slave: OwnedFd,
    closing: Arc<AtomicBool>,
    /// The test stops reading what the program writes (a stalled connection).
    paused: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// What the program wrote, signalled as each piece arrives.
    output: Arc<(Mutex<Vec<Chunk>>, Condvar)>,
    /// The screen as far as [`Pty::wait_until`] and [`Pty::with_screen`] have followed the output.
    live: Mutex<Live>,
    exit: Option<Exit>,
}

/// Bytes the program wrote, and when the test read them.
type Chunk = (Instant, Vec<u8>);

/// A screen fed the output piece by piece.
struct Live {
    screen: Screen,
    /// How many chunks it has been fed.
    fed: usize,
}

impl Live {
    /// Feeds the chunks not fed yet, up to the first after which `ok` holds; returns when that one
    /// arrived.
    fn feed_until(&mut self, chunks: &[Chunk], ok: impl Fn(&Screen) -> bool) -> Option<Instant> {
        for (at, bytes) in &chunks[self.fed..] {
            self.fed += 1;
            self.screen.feed(bytes);
            if ok(&self.screen) {
                return Some(*at);
            }
        }
        None
    }
}

/// The program on a profiles file and a state directory, with the clean environment the screen
/// tests run it in: PATH, HOME, an xterm-256color terminal, a UTF-8 locale.
pub fn screen_command(
    profiles: &std::path::Path,
    state: &std::path::Path,
    home: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sugar-sessions"));
    cmd.arg("--profiles")
        .arg(profiles)
        .arg("--state-dir")
        .arg(state)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TERM", "xterm-256color")
        .env("LANG", "C.UTF-8");
    cmd
}

/// A pty pair, both ends close-on-exec (atomically: other tests spawn programs concurrently).
pub fn openpty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let err = || std::io::Error::last_os_error();
    // SAFETY: plain libc calls on descriptors this function owns; ptsname_r writes into `name`.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", err());
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0, "grantpt: {}", err());
        assert_eq!(libc::unlockpt(m), 0, "unlockpt: {}", err());
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(m, name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(
            s >= 0,
            "open {:?}: {}",
            CStr::from_ptr(name.as_ptr()),
            err()
        );
        let slave = OwnedFd::from_raw_fd(s);
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(
            libc::ioctl(m, libc::TIOCSWINSZ, &size),
            0,
            "TIOCSWINSZ: {}",
            err()
        );
        (master, slave)
    }
}

impl Pty {
    /// Starts `cmd` on a new pty of `rows` x `cols`, in a session of its own (so that every process
    /// it starts can be found by session id). With `controlling`, the pty becomes the session's
    /// controlling terminal, as under sshd: closing the master then also sends SIGHUP.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16, controlling: bool) -> Pty {
        let (master, slave) = openpty(rows, cols);
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if controlling && libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The `Child` is not kept: the test reaps the program itself, with `wait4`.
        let started = Instant::now();
        let child = cmd.spawn().expect("the binary starts");
        let pid = child.id() as libc::pid_t;
        drop(child);
        Pty::watch(master, slave, pid, pid, rows, cols, started)
    }

    /// Starts `cmd` on a new pty as a job of a minimal job-control shell: a session leader whose
    /// controlling terminal the pty is (as a login shell's), which puts the program in a process
    /// group of its own in the terminal's foreground and waits for it to end, touching neither
    /// the terminal nor the program otherwise, then exits with its status (128 + N when signal N
    /// killed it). The program's process group is then not orphaned, so that a terminal stop
    /// signal (SIGTSTP) stops it, as under a shell. The program gets only the environment
    /// variables `cmd` sets explicitly (as after `env_clear`), and no other descriptor of the
    /// test process.
    pub fn spawn_job(cmd: Command, rows: u16, cols: u16) -> Pty {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (master, slave) = openpty(rows, cols);
        let c = |b: &[u8]| CString::new(b).expect("no NUL in the command");
        // Everything the child needs is made before fork: after it, only async-signal-safe calls.
        let args: Vec<CString> = std::iter::once(c(cmd.get_program().as_bytes()))
            .chain(cmd.get_args().map(|a| c(a.as_bytes())))
            .collect();
        let envs: Vec<CString> = cmd
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| c(&[k.as_bytes(), b"=", v.as_bytes()].concat())))
            .collect();
        let argv: Vec<*const libc::c_char> = args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = envs
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two new descriptors, owned from here on.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        let (pid_r, pid_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (slave_fd, pid_w_fd) = (slave.as_raw_fd(), pid_w.as_raw_fd());
        let started = Instant::now();
        // SAFETY: between fork and exec (or _exit) the child makes only async-signal-safe calls on
        // memory prepared above.
        let shell = unsafe { libc::fork() };
        assert!(shell >= 0, "fork: {}", std::io::Error::last_os_error());
        if shell == 0 {
            unsafe {
                if libc::setsid() == -1 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) == -1 {
                    libc::_exit(120);
                }
                for fd in 0..3 {
                    libc::dup2(slave_fd, fd);
                }
                // Nothing else of the test process's stays open here (no exec closes them).
                for fd in 3..4096 {
                    if fd != pid_w_fd {
                        libc::close(fd);
                    }
                }
                let program = libc::fork();
                if program == 0 {
                    libc::close(pid_w_fd);
                    libc::setpgid(0, 0);
                    libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                    libc::tcsetpgrp(0, libc::getpid());
                    // Default dispositions and no signal blocked, as a shell starts a job.
                    libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                    let mut none: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut none);
                    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                    libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127);
                }
                if program < 0 {
                    libc::_exit(122);
                }
                // As shells do: whichever of the two runs first puts it in its group.
                libc::setpgid(program, program);
                libc::write(
                    pid_w_fd,
                    (&program as *const libc::pid_t).cast(),
                    std::mem::size_of::<libc::pid_t>(),
                );
                libc::close(pid_w_fd);
                let mut status = 0;
                loop {
                    let rc = libc::waitpid(program, &mut status, 0);
                    if rc == program {
                        break;
                    }
                    if rc == -1 && *libc::__errno_location() != libc::EINTR {
                        libc::_exit(123);
                    }
                }
                if libc::WIFEXITED(status) {
                    libc::_exit(libc::WEXITSTATUS(status));
                }
                libc::_exit(128 + libc::WTERMSIG(status));
            }
        }
        drop(pid_w);
        let mut buf = [0u8; std::mem::size_of::<libc::pid_t>()];
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: reads into the rest of a buffer of the given length.
            let n = unsafe {
                libc::read(
                    pid_r.as_raw_fd(),
                    buf[got..].as_mut_ptr().cast(),
                    buf.len() - got,
                )
            };
            assert!(n > 0, "the job's shell did not say the program's pid");
            got += n as usize;
        }
        let program = libc::pid_t::from_ne_bytes(buf);
        Pty::watch(master, slave, shell, program, rows, cols, started)
    }

    /// Collects what the program writes to `master` on a thread of its own.
    fn watch(
        master: OwnedFd,
        slave: OwnedFd,
        pid: libc::pid_t,
        program: libc::pid_t,
        rows: u16,
        cols: u16,
        started: Instant,
    ) -> Pty {
        let master = Arc::new(master);
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let closing = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let reader = {
            let (master, output, closing) = (master.clone(), output.clone(), closing.clone());
            let paused = paused.clone();
            // Polls with a timeout rather than blocking in read: a thread blocked in read would
            // keep the master open after the test closed it.
            std::thread::spawn(move || {
                let fd = master.as_raw_fd();
                let mut buf = [0u8; 8192];
                while !closing.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    let rc = unsafe { libc::poll(&mut p, 1, 20) };
                    if rc <= 0 || p.revents & libc::POLLIN == 0 {
                        if p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    }
                    // SAFETY: reads into a buffer of the given length.
                    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if n > 0 {
                        let (chunks, arrived) = &*output;
                        chunks
                            .lock()
                            .unwrap()
                            .push((Instant::now(), buf[..n as usize].to_vec()));
                        arrived.notify_all();
                    }
                }
            })
        };
        Pty {
            rows,
            cols,
            started,
            child: pid,
            program,
            master: Some(master),
            slave,
            closing,
            paused,
            reader: Some(reader),
            output,
            live: Mutex::new(Live {
                screen: Screen::new(rows, cols),
                fed: 0,
            }),
            exit: None,
        }
    }

    /// The program's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.program
    }

    /// The pty's session: every process the program starts (that does not leave it) is in it.
    pub fn session(&self) -> libc::pid_t {
        self.child
    }

    /// Types `bytes` on the terminal.
    pub fn send(&self, bytes: &[u8]) {
        let master = self.master.as_ref().expect("the master is open");
        let mut rest = bytes;
        while !rest.is_empty() {
            // SAFETY: writes from a valid buffer of the given length.
            let n = unsafe { libc::write(master.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            assert!(
                n > 0,
                "write to the pty: {}",
                std::io::Error::last_os_error()
            );
            rest = &rest[n as usize..];
        }
    }

    /// Stops (or resumes) reading what the program writes: once the pty's buffer is full, the
    /// program's writes to the terminal block, as behind a stalled SSH connection.
    pub fn pause_reading(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    /// The system call the program's main thread is in (its number), if it is in one.
    pub fn main_thread_syscall(&self) -> Option<libc::c_long> {
        let text =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/syscall", self.program)).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// Closes the master side, as sshd does when the connection drops; returns when it is closed.
    pub fn close_master(&mut self) -> Instant {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let master = self.master.take().expect("the master is open");
        assert!(
            Arc::into_inner(master).is_some(),
            "the master has no other holder"
        );
        Instant::now()
    }

    /// Everything the program wrote so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.output
            .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// How many bytes the program wrote so far (every one: the reader takes all it writes).
    pub fn bytes_written(&self) -> usize {
        self.output
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.len())
            .sum()
    }

    /// Waits until nothing more arrives for 100 ms (at most 2 s): what the program wrote just
    /// before it ended may still be on its way through the pty when the test sees it end.
    pub fn settle(&self) {
        let start = Instant::now();
        let mut seen = self.bytes_written();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_millis(100)
            && start.elapsed() < Duration::from_secs(2)
        {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.bytes_written();
            if now != seen {
                seen = now;
                quiet_since = Instant::now();
            }
        }
    }

    /// When the output first contained `needle`.
    pub fn first_seen(&self, needle: &[u8]) -> Option<Instant> {
        let chunks = self.output.0.lock().unwrap();
        let mut all = Vec::new();
        for (at, b) in chunks.iter() {
            all.extend_from_slice(b);
            if all.windows(needle.len()).any(|w| w == needle) {
                return Some(*at);
            }
        }
        None
    }

    pub fn screen(&self) -> Screen {
        Screen::parse(&self.bytes(), self.rows, self.cols)
    }

    /// Waits until the screen satisfies `ok`, whether the program still runs or has ended (what
    /// a program wrote just before it ended may still be on its way through the pty, longer than
    /// [`Pty::settle`]'s quiet on a loaded machine); panics with the screen after `secs`.
    pub fn wait_for_output(&self, what: &str, secs: u64, ok: impl Fn(&Screen) -> bool) -> Screen {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!(
                    "timed out waiting for {what}; the screen:\n{}",
                    screen.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reaps the program if it has ended.
    pub fn try_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            let mut status = 0;
            // SAFETY: wait4 fills the status and the rusage of our own child.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::wait4(self.child, &mut status, libc::WNOHANG, &mut usage) };
            if rc == self.child {
                let tv = |t: libc::timeval| {
                    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
                };
                self.exit = Some(Exit {
                    status,
                    at: Instant::now(),
                    cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
                });
            }
        }
        self.exit
    }

    /// Waits up to `limit` for the program to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Exit> {
        let start = Instant::now();
        loop {
            if let Some(exit) = self.try_exit() {
                return Some(exit);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the screen satisfies `ok`; panics with the screen after `secs`.
    pub fn wait_for(&mut self, what: &str, secs: u64, ok: impl Fn(&Screen) -> bool) -> Screen {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if let Some(exit) = self.try_exit() {
                panic!(
                    "the program exited ({exit:?}) while waiting for {what}:\n{}",
                    screen.text()
                );
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!(
                    "timed out waiting for {what}; the screen:\n{}",
                    screen.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` until the screen satisfies `ok`, following the output piece by piece;
    /// returns when the piece that made it so arrived (or when the call was made, if that was
    /// earlier), or `None` if it did not come in time or the program ended without it. For
    /// figures: unlike [`Pty::wait_for`], it neither panics nor polls.
    pub fn wait_until(&mut self, limit: Duration, ok: impl Fn(&Screen) -> bool) -> Option<Instant> {
        let called = Instant::now();
        let deadline = called + limit;
        if ok(&self.live.lock().unwrap().screen) {
            return Some(called);
        }
        let mut ended = false;
        loop {
            {
                let (chunks, arrived) = &*self.output;
                let chunks = chunks.lock().unwrap();
                let mut live = self.live.lock().unwrap();
                if let Some(at) = live.feed_until(&chunks, &ok) {
                    return Some(at.max(called));
                }
                if ended {
                    return None;
                }
                drop(live);
                let left = deadline.checked_duration_since(Instant::now())?;
                // Wakes when more arrives, and now and then to see whether the program ended.
                let _ = arrived
                    .wait_timeout(chunks, left.min(Duration::from_millis(50)))
                    .unwrap();
            }
            if self.try_exit().is_some() {
                // What it wrote last may still be on its way: one more look once it is all in.
                self.settle();
                ended = true;
            }
        }
    }

    /// Runs `f` on the screen as it is now (everything the program wrote so far).
    pub fn with_screen<R>(&self, f: impl FnOnce(&Screen) -> R) -> R {
        let chunks = self.output.0.lock().unwrap();
        let mut live = self.live.lock().unwrap();
        live.feed_until(&chunks, |_| false);
        f(&live.screen)
    }

    /// Types `q` and waits up to `limit` for the program to end (then drops it: killed if it has
    /// not).
    pub fn quit(mut self, limit: Duration) -> Option<Exit> {
        self.send(b"q");
        self.wait_exit(limit)
    }

    /// Sends a signal to the program.
    pub fn kill(&self, signal: libc::c_int) -> Instant {
        // SAFETY: sends a signal to our own child (or its child), which has not been reaped yet.
        let rc = unsafe { libc::kill(self.program, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        Instant::now()
    }

    /// The line discipline is canonical with echo (raw mode is off), read on the slave side.
    pub fn cooked(&self) -> bool {
        // SAFETY: tcgetattr fills a termios for a valid descriptor.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            // SAFETY: our own child, not reaped yet; then reap it.
            unsafe {
                libc::kill(self.child, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(self.child, &mut status, 0);
            }
        }
        // Whatever the program started and left behind.
        for pid in session_members(self.child) {
            // SAFETY: a process of the test's own session of programs.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        self.closing.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A process's state from `/proc/PID/stat`: `R`, `S`, `T` (stopped), `Z`, ...
pub fn process_state(pid: libc::pid_t) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// One process's fields from `/proc/PID/stat` after the command name.
fn stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The live processes of session `sid`: the program, and everything it started that still runs,
/// reparented or not. Zombies (dead, waiting for their new parent to reap them) are not counted.
pub fn session_members(sid: libc::pid_t) -> Vec<libc::pid_t> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // Fields after the name: state, ppid, pgrp, session, ...
        if stat_fields(pid).is_some_and(|f| {
            f.first().is_some_and(|state| state != "Z")
                && f.get(3).and_then(|s| s.parse().ok()) == Some(sid)
        }) {
            found.push(pid);
        }
    }
    found
}

/// The live processes, in any session, whose command line starts with `prefix` (zombies left out).
pub fn processes_with_cmdline(prefix: &str) -> Vec<libc::pid_t> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let alive = stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z"));
        if alive && cmdline(pid).starts_with(prefix) {
            found.push(pid);
        }
    }
    found
}

/// A process's command line, for messages.
pub fn cmdline(pid: libc::pid_t) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The CPU time (user plus system) a live process has used so far.
pub fn cpu_time(pid: libc::pid_t) -> Option<Duration> {
    let f = stat_fields(pid)?;
    // Fields after the name: utime and stime are the 12th and 13th.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system setting.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}
