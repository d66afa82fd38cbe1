//! Includes and catalogues: the files a profiles file includes (`include = [...]`: paths and
//! file-name globs, relative to the including file, or `~/`), read recursively with cycle
//! detection and the catalogue rules (data, no secrets, no settings, safe permissions); then each
//! profile resolved from its tables (the overlays of the including files over the catalogue's
//! own table) and the `[defaults]` of the files on its way up.

use super::checks::resolve_path;
use super::errors::{ConfigError, Errors};
use super::schema::{KEYS, Kind, PASSWORD_KEYS, Scope};
use super::snapshot::{DirStamp, FileStamp, Listing, Reads, Seen};
use super::validate::{
    IncludeEntry, KeyAt, Placed, ProfileTable, Walked, resolve, settings, walk_file,
};
use super::{Origins, Profiles};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Keys a catalogue (an included file) may not hold besides the secrets (every key of
/// [`Kind::Secret`]: `password`, `client_secret`): what runs or lowers security belongs in the
/// personal file. A catalogue names its instance's URL, so it may not also name the keyring entry
/// whose password goes there, nor take the keyring over SSH.
const NOT_IN_CATALOGUE: &[&str] = &[
    "password_cmd",
    "insecure",
    "proxy",
    "allow_http",
    "keyring_account",
    "keyring_over_ssh",
];

/// What an include entry's path came to.
enum Opened {
    /// A file read now.
    New(usize),
    /// A file read already (included by another file too).
    Again(usize),
}

/// One file read.
struct Source {
    path: PathBuf,
    /// Its canonical path, to find cycles and files included twice.
    canonical: PathBuf,
    walked: Walked,
    /// The files it includes (indexes), in the order of its `include`.
    includes: Vec<usize>,
    /// ` (included from profiles.toml:1:12, ...)`: follows each of its messages.
    note: String,
    /// What it was when read (for the snapshot).
    stamp: Option<FileStamp>,
}

struct Loader {
    sources: Vec<Source>,
    /// The problems of each file, by the same index.
    errs: Vec<Errors>,
    /// The directories of the globs.
    dirs: Vec<PathBuf>,
    /// The listings of those directories and the catalogues' directories, as read.
    listings: Vec<Listing>,
    parents: Vec<DirStamp>,
    /// Every path an include entry came to, and the file it led to.
    seen: Vec<Seen>,
    /// What the load read is kept (for the snapshot): only when the top-level file was stamped.
    track: bool,
}

/// A profiles file loaded: its profiles, where the first plain `password` key of the top-level
/// file is (if any), and what the load read (for the snapshot).
pub(super) type Parsed = (Profiles, Option<KeyAt>, Reads);

/// [`parse`](super::parse) with the included files read from disk; `stamp` is the top-level
/// file's, when it was read from disk.
pub(super) fn parse_file(
    text: &str,
    path: &Path,
    stamp: Option<FileStamp>,
    want_origins: bool,
) -> Result<Parsed, Vec<ConfigError>> {
    let mut loader = Loader {
        sources: Vec::new(),
        errs: Vec::new(),
        dirs: Vec::new(),
        listings: Vec::new(),
        parents: Vec::new(),
        seen: Vec::new(),
        track: stamp.is_some(),
    };
    let mut errs = Errors::new(text, path);
    let Some(walked) = walk_file(text, &mut errs) else {
        return Err(errs.finish());
    };
    loader.add(path, walked, errs, String::new(), stamp);
    loader.follow(0, &mut vec![0]);

    let chains = loader.chains(0);
    let Loader {
        sources,
        mut errs,
        dirs,
        listings,
        parents,
        seen,
        track,
    } = loader;
    let mut profiles = Vec::with_capacity(chains.len());
    let mut origins = HashMap::new();
    for chain in chains {
        let table = |&(f, t): &(usize, usize)| {
            let table: &ProfileTable = &sources[f].walked.tables[t];
            Placed {
                layer: &table.layer,
                file: f,
                at: table.at,
            }
        };
        let tables: Vec<Placed> = chain.tables.iter().map(table).collect();
        let defaults: Vec<Placed> = chain
            .files
            .iter()
            .map(|&f| Placed {
                layer: &sources[f].walked.defaults,
                file: f,
                at: 0,
            })
            .collect();
        let (f, t) = chain.tables[chain.tables.len() - 1];
        let defined = &sources[f].walked.tables[t];
        if let Some(profile) = resolve(
            &defined.name,
            &defined.prefix,
            &tables,
            &defaults,
            &mut errs,
        ) {
            if want_origins {
                origins.insert(profile.name.clone(), origin(&tables, &defaults, &errs));
            }
            // Shared from the start: collecting `Vec<Profile>` into `Vec<Arc<Profile>>` reuses
            // the first vector's buffer (5 MB at 10,000 profiles) for the second, and keeps it.
            profiles.push(Arc::new(profile));
        }
    }

    if errs.iter().all(Errors::is_empty) {
        let plain_password_at = sources[0].walked.plain_password_at.clone();
        let profiles = Profiles {
            path: path.to_path_buf(),
            profiles,
            settings: settings(&sources[0].walked.defaults),
            files: sources.iter().map(|s| s.path.clone()).collect(),
            dirs,
            origins,
        };
        let mut cas: Vec<PathBuf> = Vec::new();
        for source in sources.iter().filter(|_| track) {
            let walked = &source.walked;
            let layers =
                std::iter::once(&walked.defaults).chain(walked.tables.iter().map(|t| &t.layer));
            for ca in layers.filter_map(|l| l.ca_cert()) {
                if !cas.contains(&ca.path) {
                    cas.push(ca.path.clone());
                }
            }
        }
        let reads = Reads {
            files: sources.into_iter().map(|s| s.stamp).collect(),
            listings,
            parents,
            seen,
            cas,
        };
        Ok((profiles, plain_password_at, reads))
    } else {
        Err(errs
            .into_iter()
            .zip(&sources)
            .flat_map(|(e, s)| e.finish_noted(&s.note))
            .collect())
    }
}

/// Where each key of a profile was set: the first layer that sets it (for the password, every key
/// of the layer that decides where it comes from).
fn origin(tables: &[Placed<'_>], defaults: &[Placed<'_>], errs: &[Errors]) -> Origins {
    let all = || tables.iter().chain(defaults);
    let password = all().find(|p| p.layer.has_password_source());
    let mut origins = Vec::new();
    for spec in KEYS.iter().filter(|k| k.scope != Scope::Defaults) {
        let placed = if PASSWORD_KEYS.contains(&spec.name) {
            password.filter(|p| p.layer.has(spec.name))
        } else {
            all().find(|p| p.layer.has(spec.name))
        };
        if let Some(p) = placed
            && let Some(field) = p.layer.field(spec.name)
        {
            origins.push(super::Origin {
                key: spec.name,
                file: p.file,
                line: errs[p.file].line_of(field.key_at),
            });
        }
    }
    origins
}

/// One profile on its way up: its tables (overlays first, the defining one last) and the files
/// whose `[defaults]` apply (the top-level one first, the defining one last).
struct Chain {
    tables: Vec<(usize, usize)>,
    files: Vec<usize>,
}

impl Loader {
    fn add(
        &mut self,
        path: &Path,
        walked: Walked,
        errs: Errors,
        note: String,
        stamp: Option<FileStamp>,
    ) -> usize {
        let canonical = std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_path_buf());
        self.sources.push(Source {
            path: path.to_path_buf(),
            canonical,
            walked,
            includes: Vec::new(),
            note,
            stamp,
        });
        self.errs.push(errs);
        self.sources.len() - 1
    }

    /// Reads the files that file `f` includes, and theirs; `stack` is the chain of files from the
    /// top-level one to `f`.
    fn follow(&mut self, f: usize, stack: &mut Vec<usize>) {
        if f > 0 {
            self.catalogue_rules(f);
        }
        let entries = std::mem::take(&mut self.sources[f].walked.includes);
        for entry in &entries {
            for path in self.expand(f, entry) {
                match self.open(f, entry, &path, stack) {
                    Some(Opened::New(child)) => {
                        self.sources[f].includes.push(child);
                        stack.push(child);
                        self.follow(child, stack);
                        stack.pop();
                    }
                    // Read already (another file includes it too): followed once, and its
                    // profiles take this file's overlays as well.
                    Some(Opened::Again(child)) if !self.sources[f].includes.contains(&child) => {
                        self.sources[f].includes.push(child);
                    }
                    Some(Opened::Again(_)) | None => {}
                }
            }
        }
    }

    /// The files an include entry names: one path (a located error when it is not there), or the
    /// files a glob in the file name matches, sorted (none is fine).
    fn expand(&mut self, f: usize, entry: &IncludeEntry) -> Vec<PathBuf> {
        let including = self.sources[f].path.clone();
        let path = resolve_path(&entry.text, &including);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let is_glob = |s: &str| s.contains(['*', '?']);
        if is_glob(&dir.to_string_lossy()) {
            self.errs[f].push(
                entry.at,
                Some(entry.key.clone()),
                "a glob may only be in the file name (e.g. conf.d/*.toml), not in a directory",
            );
            return Vec::new();
        }
        if !is_glob(&name) {
            if !path.exists() {
                self.errs[f].push(
                    entry.at,
                    Some(entry.key.clone()),
                    format!("no such file: {}", path.display()),
                );
                return Vec::new();
            }
            if self.track {
                self.seen.push(Seen::of(&path));
            }
            return vec![path];
        }
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir.clone());
            if self.track {
                self.listings.push(Listing::of(&dir));
            }
        }
        let Ok(listing) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &dir
        }) else {
            // A directory that is not there matches nothing: conf.d may not exist yet.
            return Vec::new();
        };
        let own = &self.sources[f].canonical;
        let mut found: Vec<PathBuf> = listing
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let hidden = file.starts_with('.') && !name.starts_with('.');
                (!hidden && glob_match(&name, &file)).then(|| dir.join(file))
            })
            .filter(|p| p.is_file())
            .inspect(|p| {
                if self.track {
                    self.seen.push(Seen::of(p));
                }
            })
            // A glob never matches the including file.
            .filter(|p| std::fs::canonicalize(p).is_ok_and(|c| &c != own))
            .collect();
        found.sort();
        found
    }

    /// Reads an included file when it may be: not in a cycle, not already read, safe; problems
    /// are located at the include entry.
    fn open(
        &mut self,
        f: usize,
        entry: &IncludeEntry,
        path: &Path,
        stack: &[usize],
    ) -> Option<Opened> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(start) = stack
            .iter()
            .position(|&s| self.sources[s].canonical == canonical)
        {
            let names: Vec<String> = stack[start..]
                .iter()
                .map(|&s| self.sources[s].path.display().to_string())
                .chain([path.display().to_string()])
                .collect();
            self.errs[f].push(
                entry.at,
                Some(entry.key.clone()),
                format!("include cycle: {}", names.join(" includes ")),
            );
            return None;
        }
        if let Some(again) = self.sources.iter().position(|s| s.canonical == canonical) {
            // Included twice (two globs, or two catalogues including a third): read once.
            return Some(Opened::Again(again));
        }
        let parents = self.track.then_some(&mut self.parents);
        let (text, stamp) = match read_catalogue(path, &canonical, parents) {
            Ok(read) => read,
            Err(message) => {
                self.errs[f].push(entry.at, Some(entry.key.clone()), message);
                return None;
            }
        };
        let place = self.errs[f].place(entry.at);
        let note = match self.sources[f]
            .note
            .strip_prefix(" (")
            .and_then(|n| n.strip_suffix(')'))
        {
            Some(up) => format!(" (included from {place}, {up})"),
            None => format!(" (included from {place})"),
        };
        let mut errs = Errors::new(&text, path);
        let walked = walk_file(&text, &mut errs).unwrap_or_default();
        Some(Opened::New(self.add(path, walked, errs, note, stamp)))
    }

    /// In an included file: no settings of the whole file, no secrets.
    fn catalogue_rules(&mut self, f: usize) {
        let walked = &self.sources[f].walked;
        let layers =
            std::iter::once(&walked.defaults).chain(walked.tables.iter().map(|t| &t.layer));
        for layer in layers {
            for field in &layer.fields {
                let name = field.spec.name;
                let message = if field.spec.scope == Scope::Defaults {
                    format!(
                        "`{name}` is a setting of the whole file: only the top-level profiles \
                         file may set it"
                    )
                } else if field.spec.kind == Kind::Secret || NOT_IN_CATALOGUE.contains(&name) {
                    format!(
                        "an included file (a catalogue) holds no secrets nor security \
                         exceptions: set `{name}` in the profiles file that includes it (in a \
                         [profiles.NAME] overlay or its [defaults])"
                    )
                } else {
                    continue;
                };
                self.errs[f].push(field.key_at, Some(layer.path_of(field)), message);
            }
        }
    }

    /// The profiles that file `f` and its includes define, in order (those of its includes first,
    /// in the order of `include`, then its own new ones); its tables overlay those of its
    /// includes. The same profile defined by two of its includes is a located error.
    fn chains(&mut self, f: usize) -> Vec<Chain> {
        let mut merged: Vec<Chain> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for child in self.sources[f].includes.clone() {
            for mut chain in self.chains(child) {
                let (df, dt) = chain.tables[chain.tables.len() - 1];
                let name = self.sources[df].walked.tables[dt].name.clone();
                if let Some(&i) = index.get(&name) {
                    let (pf, pt) = merged[i].tables[merged[i].tables.len() - 1];
                    if (pf, pt) == (df, dt) {
                        // The same definition reached along another way (a file included by
                        // two others): one profile, with the overlays of both ways.
                        let known = &mut merged[i];
                        for table in &chain.tables[..chain.tables.len() - 1] {
                            if !known.tables.contains(table) {
                                let last = known.tables.len() - 1;
                                known.tables.insert(last, *table);
                            }
                        }
                        for file in chain.files {
                            if !known.files.contains(&file) {
                                let last = known.files.len() - 1;
                                known.files.insert(last, file);
                            }
                        }
                        continue;
                    }
                    let place = self.errs[pf].place(self.sources[pf].walked.tables[pt].key_at);
                    let table = &self.sources[df].walked.tables[dt];
                    self.errs[df].push(
                        table.key_at,
                        Some(table.prefix.clone()),
                        format!(
                            "the profile `{name}` is also defined at {place}: define it in one \
                             catalogue (and complete it in the file that includes it)"
                        ),
                    );
                    continue;
                }
                chain.files.insert(0, f);
                index.insert(name, merged.len());
                merged.push(chain);
            }
        }
        for (t, table) in self.sources[f].walked.tables.iter().enumerate() {
            match index.get(&table.name) {
                Some(&i) => merged[i].tables.insert(0, (f, t)),
                None => {
                    index.insert(table.name.clone(), merged.len());
                    merged.push(Chain {
                        tables: vec![(f, t)],
                        files: vec![f],
                    });
                }
            }
        }
        merged
    }
}

/// Reads an included file, refused when someone else could change it, as OpenSSH refuses such
/// config: owned by another user (root aside), writable by group or others, or in a directory
/// another user owns or that others may write to without the sticky bit. The checks are made on
/// the file opened (not on its path again, which could be swapped in between), and anything but
/// a regular file is refused (a FIFO would make the load wait). Returns the text, and with
/// `parents` (kept for the snapshot) the file's stamp, the directory's owner and mode going there.
fn read_catalogue(
    path: &Path,
    canonical: &Path,
    mut parents: Option<&mut Vec<DirStamp>>,
) -> Result<(String, Option<FileStamp>), String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let refused = "refused, as OpenSSH refuses such configuration";
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{} belongs to another user (uid {}): {refused}",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "others can change {} (mode {:03o}): {refused}; run `chmod go-w {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    if let Some(dir) = canonical.parent()
        && let Ok(dir_meta) = std::fs::metadata(dir)
    {
        let dir_mode = dir_meta.mode() & 0o7777;
        if dir_meta.uid() != me && dir_meta.uid() != 0 {
            return Err(format!(
                "others can replace {}: its directory {} belongs to another user (uid {}): \
                 {refused}",
                path.display(),
                dir.display(),
                dir_meta.uid()
            ));
        }
        if dir_mode & 0o022 != 0 && dir_mode & 0o1000 == 0 {
            return Err(format!(
                "others can replace {}: its directory {} is writable by others (mode {:03o}): \
                 {refused}",
                path.display(),
                dir.display(),
                dir_mode & 0o777
            ));
        }
        if let Some(parents) = parents.as_deref_mut() {
            let stamp = DirStamp::of(dir, &dir_meta);
            if !parents.contains(&stamp) {
                parents.push(stamp);
            }
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    let stamp = parents.and_then(|_| FileStamp::of(path, &meta, &text));
    Ok((text, stamp))
}

/// A file name against a glob of `*` (any run of characters) and `?` (one character).
fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.toml", "a.toml"));
        assert!(glob_match("*.toml", ".toml"));
        assert!(!glob_match("*.toml", "a.toml~"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*a*b", "xaxxb"));
        assert!(!glob_match("*a*b", "xaxxbc"));
    }
}
