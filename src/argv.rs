//! The command a command line asks for, read before (or without) parsing it: for a lock holder's
//! record and for the conventions of a command's usage errors.

/// Global options that take a value (`--profiles FILE`): their value is not the command.
const WITH_VALUE: [&str; 3] = ["--profiles", "--state-dir", "--lock-timeout"];

/// The first word that is neither an option nor a global option's value (`check` in
/// `sugar-sessions --profiles p.toml check --all`).
pub fn command_word<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Option<String> {
    let mut words = args
        .iter()
        .skip(1)
        .map(|a| a.as_ref().to_string_lossy().into_owned());
    while let Some(word) = words.next() {
        if WITH_VALUE.contains(&word.as_str()) {
            words.next();
        } else if !word.starts_with('-') {
            return Some(word);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_found_past_global_options() {
        let cases: [(&[&str], Option<&str>); 5] = [
            (&["s", "check", "--all"], Some("check")),
            (&["s", "--profiles", "p.toml", "check"], Some("check")),
            (
                &["s", "--profiles=p.toml", "--ascii", "serve"],
                Some("serve"),
            ),
            (
                &["s", "--lock-timeout", "3", "--state-dir", "d", "token", "x"],
                Some("token"),
            ),
            (&["s", "--ascii"], None),
        ];
        for (args, want) in cases {
            assert_eq!(command_word(args).as_deref(), want, "{args:?}");
        }
    }
}
