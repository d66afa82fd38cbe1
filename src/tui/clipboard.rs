//! The clipboard through the terminal: OSC 52 (`ESC ] 52 ; c ; BASE64 BEL`), which the terminal
//! the user sits at turns into its clipboard, over SSH too. Inside tmux the sequence goes as it
//! is (tmux 3.3+ with `set-clipboard on` keeps it in its buffer and passes it on to the outer
//! terminal); inside GNU screen it is cut into DCS strings (`ESC P ... ESC \`) that screen passes
//! through, since screen does not forward OSC 52 itself and limits the length of one string.
//!
//! `app` decides what is copied and checks its size; this writes it, and the text (a token) goes
//! nowhere else: the sequence is wiped from memory once written.

use base64::Engine as _;
use std::io::Write;
use zeroize::Zeroizing;

/// What the screen runs inside, for how OSC 52 must be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multiplexer {
    /// A terminal (or tmux, which takes plain OSC 52).
    None,
    /// tmux (`TMUX` set): plain OSC 52, never the passthrough wrapping.
    Tmux,
    /// GNU screen (`STY` set, or `TERM` starting with `screen` outside tmux): DCS chunks.
    Screen,
}

/// The most bytes of one DCS string sent to GNU screen, `ESC P` and `ESC \` included: screen
/// 4.0 took 256 bytes per string (4.2 takes 512, later ones 768), so 256 passes them all.
pub const SCREEN_STRING: usize = 256;

impl Multiplexer {
    /// From `TMUX`, `STY` and `TERM`. Empty values count as unset.
    pub fn detect(tmux: Option<&str>, sty: Option<&str>, term: Option<&str>) -> Multiplexer {
        let set = |v: Option<&str>| v.is_some_and(|v| !v.is_empty());
        if set(tmux) {
            Multiplexer::Tmux
        } else if set(sty) || term.is_some_and(|t| t.starts_with("screen")) {
            Multiplexer::Screen
        } else {
            Multiplexer::None
        }
    }

    /// From the process's environment.
    pub fn from_env() -> Multiplexer {
        let var = |k: &str| std::env::var(k).ok();
        Multiplexer::detect(
            var("TMUX").as_deref(),
            var("STY").as_deref(),
            var("TERM").as_deref(),
        )
    }
}

/// The bytes that put `text` on the clipboard, for a terminal inside `mux`.
pub fn osc52(text: &str, mux: Multiplexer) -> Zeroizing<Vec<u8>> {
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(text));
    let mut seq = Zeroizing::new(Vec::with_capacity(encoded.len() + 16));
    seq.extend_from_slice(b"\x1b]52;c;");
    seq.extend_from_slice(encoded.as_bytes());
    seq.push(0x07);
    match mux {
        Multiplexer::None | Multiplexer::Tmux => seq,
        Multiplexer::Screen => {
            let chunk = SCREEN_STRING - 4;
            let mut out = Zeroizing::new(Vec::with_capacity(seq.len() + seq.len() / chunk * 4 + 4));
            for part in seq.chunks(chunk) {
                out.extend_from_slice(b"\x1bP");
                out.extend_from_slice(part);
                out.extend_from_slice(b"\x1b\\");
            }
            out
        }
    }
}

/// Writes the sequence for `text` to the terminal (standard output, where the screen draws).
pub fn copy(text: &str, mux: Multiplexer) -> std::io::Result<()> {
    use std::os::fd::FromRawFd;
    let seq = osc52(text, mux);
    // What the screen wrote goes first; then the sequence straight to the descriptor, not
    // through standard output's buffer, which would keep a copy of it that is never wiped.
    let mut stdout = std::io::stdout().lock();
    stdout.flush()?;
    // SAFETY: descriptor 1 is open for the whole process (the screen draws on it); the File is
    // never dropped, so it is not closed.
    let mut fd = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    fd.write_all(&seq)?;
    drop(stdout);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_tmux_first_then_screen() {
        use Multiplexer::{Screen, Tmux};
        let d = Multiplexer::detect;
        assert_eq!(d(None, None, Some("xterm-256color")), Multiplexer::None);
        assert_eq!(
            d(Some("/tmp/tmux-1000/default,1,0"), None, Some("screen")),
            Tmux
        );
        assert_eq!(d(Some("/tmp/t,1,0"), Some("12.pts-0.host"), None), Tmux);
        assert_eq!(d(None, Some("12.pts-0.host"), Some("xterm")), Screen);
        assert_eq!(d(None, None, Some("screen.xterm-256color")), Screen);
        assert_eq!(
            d(Some(""), Some(""), Some("tmux-256color")),
            Multiplexer::None
        );
    }

    #[test]
    fn plain_and_tmux_send_one_osc_52() {
        for mux in [Multiplexer::None, Multiplexer::Tmux] {
            assert_eq!(
                osc52("token-1", mux).as_slice(),
                b"\x1b]52;c;dG9rZW4tMQ==\x07"
            );
        }
    }

    #[test]
    fn screen_gets_dcs_strings_no_longer_than_it_takes() {
        let text = "x".repeat(1000);
        let seq = osc52(&text, Multiplexer::Screen);
        let plain = osc52(&text, Multiplexer::None);
        // Cut into `ESC P ... ESC \` strings of at most SCREEN_STRING bytes...
        let mut joined = Vec::new();
        let mut rest: &[u8] = &seq;
        let mut strings = 0;
        while !rest.is_empty() {
            assert!(rest.starts_with(b"\x1bP"), "{rest:?}");
            let end = rest.windows(2).position(|w| w == b"\x1b\\").unwrap();
            assert!(end + 2 <= SCREEN_STRING, "a string of {} bytes", end + 2);
            joined.extend_from_slice(&rest[2..end]);
            rest = &rest[end + 2..];
            strings += 1;
        }
        // ...which together are the plain sequence.
        assert_eq!(joined, plain.as_slice());
        assert_eq!(strings, plain.len().div_ceil(SCREEN_STRING - 4));
    }
}
