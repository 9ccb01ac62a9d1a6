//! What a function wrote, made safe to show on the operator's terminal. A function controls its
//! log lines, its log tail and its response; printed raw, their control characters are commands to
//! the terminal (OSC 52 writes the clipboard, OSC 0 sets the window title, `\r` and cursor movement
//! overwrite the lines before them, e.g. a fake `REPORT` line over the real one). On a terminal
//! every control character but newline and tab is shown as a visible escape (`\x1b`, `\r`,
//! `\u{9b}`); piped output stays byte-exact for scripts.
use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` would be interpreted by a terminal: C0 controls but `\n` and `\t`, DEL, C1 controls.
fn is_terminal_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// `text` with every terminal control character replaced by a visible escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !is_terminal_control(c) {
            out.push(c);
            continue;
        }
        // Writing into a String cannot fail.
        let _ = match c {
            '\r' => out.write_str("\\r"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(out)
}

/// Bytes for a terminal: decoded as UTF-8 (invalid sequences shown as U+FFFD) and escaped.
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(bytes)).into_owned()
}

/// `text` escaped when `terminal` says it goes to one, unchanged otherwise.
pub fn for_output(text: &str, terminal: bool) -> Cow<'_, str> {
    if terminal {
        escape_controls(text)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_commands_are_shown_not_run() {
        let hostile = "ok\n\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b]0;title\x1b\\\rREPORT RequestId: fake\n\u{9b}2J\x7f\ttab";
        let shown = escape_controls(hostile);
        assert!(!shown.chars().any(is_terminal_control), "{shown:?}");
        assert_eq!(
            shown,
            "ok\n\\x1b]52;c;ZWNobyBwd25lZA==\\x07\\x1b]0;title\\x1b\\\\rREPORT RequestId: fake\n\\u{9b}2J\\x7f\ttab"
        );
        assert!(matches!(escape_controls("plain\tline\n"), Cow::Borrowed(_)));
        assert_eq!(for_output(hostile, false), hostile);
        assert_eq!(escape_bytes(b"a\x1b[2Jb\xff"), "a\\x1b[2Jb\u{fffd}");
    }
}
