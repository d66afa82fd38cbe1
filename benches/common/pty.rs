//! The real binary in a pseudo-terminal, for whole-program figures: everything it writes is
//! counted and fed to a small terminal model (enough of VT100 for what crossterm writes), so that
//! a figure can wait for the screen to show something, and note when it did.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The screen as the program drew it.
pub struct Screen {
    pub rows: usize,
    pub cols: usize,
    grid: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// An escape sequence cut by a read.
    pending: Vec<u8>,
}

impl Screen {
    fn new(rows: u16, cols: u16) -> Screen {
        Screen {
            rows: rows.into(),
            cols: cols.into(),
            grid: vec![vec![' '; cols.into()]; rows.into()],
            row: 0,
            col: 0,
            pending: Vec::new(),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.grid.iter().map(|l| l.iter().collect()).collect()
    }

    pub fn line_with(&self, needle: &str) -> Option<String> {
        self.lines().into_iter().find(|l| l.contains(needle))
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.line_with(needle).is_some()
    }

    fn put(&mut self, c: char) {
        if self.row < self.rows && self.col < self.cols {
            self.grid[self.row][self.col] = c;
        }
        self.col += 1;
    }

    fn erase_line(&mut self, from: usize) {
        if self.row < self.rows {
            for c in &mut self.grid[self.row][from.min(self.cols)..] {
                *c = ' ';
            }
        }
    }

    fn csi(&mut self, params: &str, fin: char) {
        let nums: Vec<usize> = params
            .trim_start_matches('?')
            .split(';')
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        let n = |k: usize, d: usize| nums.get(k).copied().filter(|&v| v > 0).unwrap_or(d);
        match fin {
            'H' | 'f' => {
                self.row = n(0, 1) - 1;
                self.col = n(1, 1) - 1;
            }
            'A' => self.row = self.row.saturating_sub(n(0, 1)),
            'B' => self.row = (self.row + n(0, 1)).min(self.rows - 1),
            'C' => self.col += n(0, 1),
            'D' => self.col = self.col.saturating_sub(n(0, 1)),
            'G' => self.col = n(0, 1) - 1,
            'J' if params == "2" || params == "3" => {
                for l in &mut self.grid {
                    l.iter_mut().for_each(|c| *c = ' ');
                }
            }
            'J' => {
                self.erase_line(self.col);
                for l in &mut self.grid[(self.row + 1).min(self.rows)..] {
                    l.iter_mut().for_each(|c| *c = ' ');
                }
            }
            'K' => self.erase_line(if params == "2" { 0 } else { self.col }),
            _ => {} // colours, modes, scrolling regions: not needed here
        }
    }

    /// Feeds what the program wrote.
    fn feed(&mut self, bytes: &[u8]) {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        // Keep an incomplete UTF-8 sequence or escape sequence at the end for the next read.
        let valid = match std::str::from_utf8(&data) {
            Ok(_) => data.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => data.len(),
        };
        let text = String::from_utf8_lossy(&data[..valid]).into_owned();
        let tail = data[valid..].to_vec();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '\x1b' => {
                    let rest = &text[at..];
                    match parse_escape(rest) {
                        Some((len, Some((params, fin)))) => {
                            self.csi(&params, fin);
                            skip(&mut chars, at + len);
                        }
                        Some((len, None)) => skip(&mut chars, at + len),
                        None => {
                            // Cut by the read: keep it for next time.
                            self.pending = rest.as_bytes().to_vec();
                            self.pending.extend_from_slice(&tail);
                            return;
                        }
                    }
                }
                '\r' => self.col = 0,
                '\n' => self.row = (self.row + 1).min(self.rows - 1),
                '\x08' => self.col = self.col.saturating_sub(1),
                c if c.is_control() => {}
                c => self.put(c),
            }
        }
        self.pending = tail;
    }
}

fn skip(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, to: usize) {
    while chars.peek().is_some_and(|&(at, _)| at < to) {
        chars.next();
    }
}

/// An escape sequence at the start of `s`: its length and, for CSI, its parameters and final
/// character; `None` when it is incomplete.
fn parse_escape(s: &str) -> Option<(usize, Option<(String, char)>)> {
    let b = s.as_bytes();
    match b.get(1)? {
        b'[' => {
            for (k, &c) in b.iter().enumerate().skip(2) {
                if (0x40..=0x7e).contains(&c) {
                    return Some((k + 1, Some((s[2..k].to_string(), c as char))));
                }
            }
            None
        }
        b']' => {
            // OSC, up to BEL or ESC \.
            for k in 2..b.len() {
                if b[k] == 0x07 {
                    return Some((k + 1, None));
                }
                if b[k] == 0x1b && b.get(k + 1) == Some(&b'\\') {
                    return Some((k + 2, None));
                }
            }
            None
        }
        b'(' | b')' => b.get(2).map(|_| (3, None)),
        _ => Some((2, None)),
    }
}

/// What the reader thread keeps.
struct Seen {
    screen: Screen,
    bytes: u64,
    /// When the screen last changed, and how often it did.
    reads: u64,
    closed: bool,
}

/// A program in a pseudo-terminal.
pub struct Pty {
    pub child: Child,
    pub started: Instant,
    master: std::fs::File,
    seen: Arc<(Mutex<Seen>, Condvar)>,
}

/// A pseudo-terminal pair (master, slave) of this size.
fn openpty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers and a valid winsize; no name buffer or termios.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh descriptors that we now own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [master.as_raw_fd(), slave.as_raw_fd()] {
        // SAFETY: fcntl on descriptors we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    (master, slave)
}

impl Pty {
    /// Starts `cmd` on the slave side of a new pseudo-terminal of this size, as the controlling
    /// terminal of a new session.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        let (master, slave) = openpty(rows, cols);
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        cmd.stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(io(&slave))
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .env_remove("NO_COLOR");
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd.spawn().expect("spawn in a pty");
        drop(slave);
        let master = std::fs::File::from(master);
        let seen = Arc::new((
            Mutex::new(Seen {
                screen: Screen::new(rows, cols),
                bytes: 0,
                reads: 0,
                closed: false,
            }),
            Condvar::new(),
        ));
        let mut reader = master.try_clone().expect("dup master");
        let shared = seen.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (lock, cv) = &*shared;
                        let mut s = lock.lock().unwrap();
                        s.bytes += n as u64;
                        s.reads += 1;
                        s.screen.feed(&buf[..n]);
                        cv.notify_all();
                    }
                }
            }
            let (lock, cv) = &*shared;
            lock.lock().unwrap().closed = true;
            cv.notify_all();
        });
        Pty {
            child,
            started,
            master,
            seen,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty");
    }

    /// Bytes the program wrote so far.
    pub fn bytes(&self) -> u64 {
        self.seen.0.lock().unwrap().bytes
    }

    /// Waits until `ok` holds for the screen; returns when it first did (the read that made it so).
    pub fn wait_for(&self, limit: Duration, ok: impl Fn(&Screen) -> bool) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        let (lock, cv) = &*self.seen;
        let mut s = lock.lock().unwrap();
        loop {
            if ok(&s.screen) {
                return Some(Instant::now());
            }
            if s.closed {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = cv.wait_timeout(s, left).unwrap().0;
        }
    }

    /// Runs `f` on the screen as it is now.
    pub fn with_screen<R>(&self, f: impl FnOnce(&Screen) -> R) -> R {
        f(&self.seen.0.lock().unwrap().screen)
    }

    /// Quits with `q` (and kills the program if it is still there after `limit`).
    pub fn quit(mut self, limit: Duration) {
        let _ = self.master.write_all(b"q");
        let deadline = Instant::now() + limit;
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
