//! Where each key of the merged configuration came from (file and line), so every
//! message about a key can name them.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// The place a value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default.
    Default,
    /// A line of a config file.
    File { path: PathBuf, line: usize },
    /// A command-line flag or its environment variable.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "built-in default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Flag(flag) => write!(f, "command line {flag}"),
        }
    }
}

/// Dotted key path (`crio.runtime.default_runtime`) -> where it was last set.
#[derive(Debug, Default, Clone)]
pub struct Origins {
    by_key: HashMap<String, Origin>,
}

impl Origins {
    /// Records every key (tables included) of one parsed file.
    pub fn record_file(&mut self, path: &Path, text: &str) {
        // The file already parsed once as a `toml::Table`, so this cannot fail in practice.
        if let Ok(doc) = DeTable::parse(text) {
            let lines = LineIndex::new(text);
            self.walk(path, &lines, "", doc.get_ref());
        }
    }

    fn walk(&mut self, path: &Path, lines: &LineIndex, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let dotted = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: lines.line_of(key.span().start),
            };
            self.by_key.insert(dotted.clone(), origin);
            if let DeValue::Table(inner) = value.get_ref() {
                self.walk(path, lines, &dotted, inner);
            }
        }
    }

    /// Records a value set by a flag.
    pub fn record_flag(&mut self, key: &str, flag: &'static str) {
        self.by_key.insert(key.to_string(), Origin::Flag(flag));
    }

    /// Where `key` was set; a key never written anywhere is a default.
    /// Array elements (`key.0`) resolve to their array.
    pub fn of(&self, key: &str) -> Origin {
        let mut probe = key;
        loop {
            if let Some(origin) = self.by_key.get(probe) {
                return origin.clone();
            }
            match probe.rsplit_once('.') {
                Some((parent, last)) if last.bytes().all(|b| b.is_ascii_digit()) => probe = parent,
                _ => return Origin::Default,
            }
        }
    }
}

/// Byte offset -> 1-based line number.
#[derive(Debug)]
pub(super) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    pub(super) fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_nested_keys_with_lines() {
        let text = "# c\n[crio.runtime]\ndefault_runtime = \"x\"\n\n[crio.runtime.runtimes.x]\nruntime_path = \"/a\"\nallowed_annotations = [\"a\", 1]\n";
        let mut o = Origins::default();
        o.record_file(Path::new("/f.conf"), text);
        let at = |line| Origin::File {
            path: "/f.conf".into(),
            line,
        };
        assert_eq!(o.of("crio.runtime.default_runtime"), at(3));
        assert_eq!(o.of("crio.runtime.runtimes.x.runtime_path"), at(6));
        assert_eq!(o.of("crio.runtime.runtimes.x.allowed_annotations.1"), at(7));
        assert_eq!(o.of("crio.api.listen"), Origin::Default);
    }

    #[test]
    fn line_index_counts_from_one() {
        let idx = LineIndex::new("a\nbb\n\nc");
        assert_eq!(idx.line_of(0), 1);
        assert_eq!(idx.line_of(2), 2);
        assert_eq!(idx.line_of(5), 3);
        assert_eq!(idx.line_of(6), 4);
    }
}
