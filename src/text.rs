//! Text from outside the program (a server's answers and headers, pasted text) made safe to put on
//! a terminal.

/// `text` without control characters: every C0 character (tab, line feed and carriage return
/// included), DEL and every C1 character is dropped, and an escape sequence one of them starts is
/// dropped whole (CSI `ESC [` ... final byte; OSC, DCS, SOS, PM and APC up to BEL or ST; `ESC` and
/// the bytes of a two-character sequence), so that nothing left can move the cursor, change
/// colours, set the title or the clipboard, or otherwise instruct a terminal. Printable text is
/// kept as it is. The result is allocated once (it is never longer than `text`), so that a secret
/// passed through leaves no copies behind in freed memory.
pub fn strip_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    skip_csi(&mut chars);
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    chars.next();
                    skip_string(&mut chars);
                }
                Some(' '..='/') | Some('0'..='~') => {
                    // `ESC` intermediates* final: a two-character (or nF) sequence.
                    while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
                    chars.next_if(|c| matches!(c, '0'..='~'));
                }
                _ => {} // a lone ESC
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The rest of a control sequence after its introducer: parameter and intermediate bytes, then
/// the final byte. Stops without consuming at anything else (which is then handled on its own).
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| matches!(c, ' '..='?')).is_some() {}
    chars.next_if(|c| matches!(c, '@'..='~'));
}

/// The rest of a control string (OSC, DCS, ...): everything up to and including its terminator,
/// BEL, `ESC \` or ST; an unterminated one runs to the end of the text, as a terminal would take it.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\x07' | '\u{9c}' => return,
            '\x1b' => {
                chars.next_if_eq(&'\\');
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_controls;

    #[test]
    fn printable_text_is_kept_as_it_is() {
        for text in [
            "",
            "need_login",
            "Invalid platform specified.",
            "café 🎉 <b>&",
            "a [31m b",
        ] {
            assert_eq!(strip_controls(text), text);
        }
    }

    #[test]
    fn escape_sequences_are_dropped_whole() {
        assert_eq!(strip_controls("need_login\x1b[31m"), "need_login");
        assert_eq!(strip_controls("a\x1b[1;31;4mred\x1b[0m b"), "ared b");
        assert_eq!(strip_controls("a\x1b[?1049hb"), "ab");
        // OSC 52 (set the clipboard), ended by BEL or by ST.
        assert_eq!(strip_controls("bad\x1b]52;c;AAAA\x07 pw"), "bad pw");
        assert_eq!(strip_controls("t\x1b]0;title\x1b\\x"), "tx");
        assert_eq!(strip_controls("d\x1bPq#0;2;0;0;0\x1b\\e"), "de");
        // Two-character sequences: reset, keypad mode, charset.
        assert_eq!(strip_controls("a\x1bcb\x1b=c\x1b(Bd"), "abcd");
        // The one-character C1 introducers, and ST.
        assert_eq!(
            strip_controls("sso.\u{9b}31mexample.com"),
            "sso.example.com"
        );
        assert_eq!(strip_controls("x\u{9d}0;title\u{9c}y"), "xy");
        // An unterminated string runs to the end, as on a terminal.
        assert_eq!(strip_controls("ok\x1b]0;never ended"), "ok");
        // A lone ESC, and one at the end.
        assert_eq!(strip_controls("a\x1b\x1bé\x1b"), "aé");
    }

    #[test]
    fn every_other_control_character_is_dropped() {
        assert_eq!(
            strip_controls("a\tb\r\nc\x07\x08\x00d\x7fe\u{85}f\u{9c}g"),
            "abcdefg"
        );
        // Each C0 and C1 character but those that introduce a sequence (tested above).
        let introducers = [
            '\x1b', '\u{9b}', '\u{90}', '\u{98}', '\u{9d}', '\u{9e}', '\u{9f}',
        ];
        let all: String = (0u32..0x20)
            .chain(0x7f..0xa0)
            .filter_map(char::from_u32)
            .filter(|c| !introducers.contains(c))
            .collect();
        assert_eq!(all.chars().count(), 64 + 1 - introducers.len());
        assert_eq!(strip_controls(&format!("<{all}>")), "<>");
        // Nothing a terminal acts on is left, whatever the input.
        for c in (0u32..0x250).filter_map(char::from_u32) {
            for text in [format!("{c}"), format!("\x1b{c}x"), format!("\u{9b}{c}x")] {
                assert!(
                    !strip_controls(&text).chars().any(char::is_control),
                    "{text:?}"
                );
            }
        }
    }
}
