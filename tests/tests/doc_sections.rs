//! Every `§` citation in the workspace's Rust sources lands somewhere in
//! `docs/protocol.md`.
//!
//! The code cites the protocol reference by section (`§3.6`, `§2.7–§2.9`, `§4.1–4.2`), by
//! a §11 entry (`§11 T4`, also with the id on the next comment line), by a step or item of
//! a section's numbered list (`§2.5 step 4`, `§2.5 steps 4–5`, `§10 item 7`) and by a
//! receive state (`§5 HEADER1`). A section must be a heading of the document, a §11 id a
//! bold entry of §11 (a line starting `* **T4`), a step or item a numbered line of that
//! section, and a state name a word of that section. Every citation that does not resolve
//! is printed with its file and line, and the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace members whose sources are scanned.
const MEMBERS: [&str; 5] = ["core", "std-adapter", "kernel-shim", "tests", "examples"];

/// The numbered headings `docs/protocol.md` must have: the research specification's.
const EXPECTED_SECTIONS: &[&str] = &[
    "0", "1", "2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "3", "3.1",
    "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "4", "4.1", "4.2", "4.3", "4.4", "5", "5.1", "5.2",
    "5.3", "6", "6.1", "6.2", "7", "8", "8.1", "8.2", "8.3", "8.4", "8.5", "9", "10", "11",
];

/// The §11 entries `docs/protocol.md` must have.
const EXPECTED_ITEMS: &[(char, u32)] = &[('H', 12), ('R', 6), ('T', 9), ('S', 5)];

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent", manifest.display()))
        .to_path_buf()
}

/// What a citation points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A numbered heading: `§3.6`.
    Section(String),
    /// An entry of a section: `§11 T4`.
    Item(String, String),
    /// Numbered line `n` of a section's list: `§2.5 step 4`, `§10 item 7`.
    Step(String, u32),
    /// A word that must occur in a section: `§5 HEADER1`.
    Word(String, String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Section(s) => write!(f, "§{s}"),
            Self::Item(s, id) => write!(f, "§{s} {id}"),
            Self::Step(s, n) => write!(f, "§{s} step/item {n}"),
            Self::Word(s, w) => write!(f, "§{s} {w}"),
        }
    }
}

/// One citation (one `§`), what it points at, and where it was found.
#[derive(Debug)]
struct Citation {
    file: PathBuf,
    line: usize,
    targets: Vec<Target>,
}

/// The document: body lines under each heading, keyed by the heading's number.
struct Doc {
    sections: BTreeMap<String, Vec<String>>,
}

impl Doc {
    fn parse(text: &str) -> Self {
        let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut in_fence = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
            }
            if !in_fence && line.starts_with('#') {
                let title = line.trim_start_matches('#').trim();
                current = heading_key(title);
                if let Some(key) = &current {
                    sections.entry(key.clone()).or_default();
                }
                continue;
            }
            if let Some(key) = &current {
                sections
                    .entry(key.clone())
                    .or_default()
                    .push(line.to_string());
            }
        }
        Self { sections }
    }

    /// Why `target` does not resolve, or `None` if it does.
    fn check(&self, target: &Target) -> Option<String> {
        let section = match target {
            Target::Section(s) | Target::Item(s, _) | Target::Step(s, _) | Target::Word(s, _) => s,
        };
        let Some(body) = self.sections.get(section) else {
            return Some(format!("no heading numbered {section}"));
        };
        let present = |pred: &dyn Fn(&str) -> bool| body.iter().any(|l| pred(l));
        match target {
            Target::Section(_) => None,
            Target::Item(_, id) => (!present(&|l| is_entry(l, id)))
                .then(|| format!("§{section} has no entry starting with **{id}")),
            Target::Step(_, n) => (!present(&|l| l.trim_start().starts_with(&format!("{n}. "))))
                .then(|| format!("§{section} has no numbered line {n}.")),
            Target::Word(_, w) => (!present(&|l| contains_word(l, w)))
                .then(|| format!("§{section} does not mention {w}")),
        }
    }
}

/// The number of a heading (`"2.1 Buffer layout"` → `2.1`, `"11. Ambiguities"` → `11`),
/// or `Appendix A` for an appendix; `None` for other headings.
fn heading_key(title: &str) -> Option<String> {
    if let Some(rest) = title.strip_prefix("Appendix ") {
        let letter: String = rest.chars().take_while(char::is_ascii_uppercase).collect();
        return (!letter.is_empty()).then(|| format!("Appendix {letter}"));
    }
    let first = title.split_whitespace().next()?;
    let number = first.trim_end_matches('.');
    let is_number = !number.is_empty()
        && number
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    is_number.then(|| number.to_string())
}

/// A list or table entry that starts with the bold id: `* **T4**`, `- **T4 —`, `| **T4** |`.
fn is_entry(line: &str, id: &str) -> bool {
    let t = line.trim_start();
    let Some(rest) = ["* **", "- **", "| **"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
    else {
        return false;
    };
    rest.strip_prefix(id)
        .is_some_and(|after| !after.starts_with(|c: char| c.is_ascii_alphanumeric()))
}

fn contains_word(line: &str, word: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w == word)
}

/// Reads `1`, `2.5`, `11` at the start of `s`: digit groups joined by dots (a dot not
/// followed by a digit ends the number). Returns the number and the rest.
fn take_number(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let digits_from = |i: usize| {
        bytes
            .iter()
            .skip(i)
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut end = digits_from(0);
    if end == 0 {
        return None;
    }
    while bytes.get(end) == Some(&b'.') && digits_from(end + 1) > 0 {
        end += 1 + digits_from(end + 1);
    }
    Some((s[..end].to_string(), &s[end..]))
}

/// Reads a plain integer at the start of `s`.
fn take_int(s: &str) -> Option<(u32, &str)> {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// Reads a §11 id (`T4`, `H12`) at the start of `s`.
fn take_item_id(s: &str) -> Option<String> {
    let mut chars = s.chars();
    let letter = chars.next().filter(char::is_ascii_uppercase)?;
    let digits: String = chars.clone().take_while(char::is_ascii_digit).collect();
    let after = chars.nth(digits.len());
    let ends = after.is_none_or(|c| !c.is_ascii_alphanumeric());
    (!digits.is_empty() && digits.len() <= 2 && ends).then(|| format!("{letter}{digits}"))
}

/// A comment line's text without its indentation and comment marker.
fn comment_text(line: &str) -> &str {
    let t = line.trim_start();
    ["//!", "///", "//", "*"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t)
        .trim_start()
}

/// Every citation in one file's text.
fn citations_in(file: &Path, text: &str) -> Vec<Citation> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let next_line = lines.get(index + 1).map(|l| comment_text(l));
        for (at, _) in line.match_indices('§') {
            let after = &line[at + '§'.len_utf8()..];
            let targets = targets_at(after, next_line);
            if !targets.is_empty() {
                out.push(Citation {
                    file: file.to_path_buf(),
                    line: index + 1,
                    targets,
                });
            }
        }
    }
    out
}

/// The targets of the citation whose text (after the `§`) is `after`; `next_line` is the
/// following line's comment text, for an id that wrapped onto it.
fn targets_at(after: &str, next_line: Option<&str>) -> Vec<Target> {
    let Some((section, rest)) = take_number(after) else {
        return Vec::new(); // a `§` not followed by a number: not a citation
    };
    let mut targets = vec![Target::Section(section.clone())];
    // A range whose end has no `§` of its own: `§4.1–4.2`. (`§2.7–§2.9` is two citations.)
    if let Some(end) = rest.strip_prefix('–').or_else(|| rest.strip_prefix('-'))
        && let Some((last, _)) = take_number(end)
    {
        targets.push(Target::Section(last));
        return targets;
    }
    let spaced = rest.strip_prefix(' ');
    if section == "11" {
        let id_text = match spaced {
            Some(s) => Some(s),
            None if rest.trim().is_empty() => next_line,
            None => None,
        };
        if let Some(id) = id_text.and_then(take_item_id) {
            targets.push(Target::Item(section, id));
        }
        return targets;
    }
    let Some(spaced) = spaced else {
        return targets;
    };
    let list = ["steps ", "step ", "items ", "item "]
        .iter()
        .find_map(|p| spaced.strip_prefix(p));
    if let Some(list) = list {
        if let Some((first, tail)) = take_int(list) {
            targets.push(Target::Step(section.clone(), first));
            if let Some(end) = tail.strip_prefix('–').or_else(|| tail.strip_prefix('-'))
                && let Some((last, _)) = take_int(end)
            {
                targets.push(Target::Step(section, last));
            }
        }
        return targets;
    }
    // A state or other name in capitals right after the number: `§5 HEADER1`.
    let word: String = spaced
        .chars()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        .collect();
    let word_ends = spaced[word.len()..]
        .chars()
        .next()
        .is_none_or(|c| !c.is_ascii_alphanumeric());
    if word.len() >= 3 && word.starts_with(|c: char| c.is_ascii_uppercase()) && word_ends {
        targets.push(Target::Word(section, word));
    }
    targets
}

/// Every `.rs` file under `dir`, `target/` directories left out.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn protocol_doc(root: &Path) -> Doc {
    Doc::parse(&read(&root.join("docs").join("protocol.md")))
}

/// Checks `citations` against the document; prints the unresolved ones and fails if any.
fn assert_resolved(doc: &Doc, root: &Path, citations: &[Citation], what: &str) {
    let mut unresolved = Vec::new();
    for c in citations {
        for target in &c.targets {
            if let Some(why) = doc.check(target) {
                let file = c.file.strip_prefix(root).unwrap_or(&c.file);
                unresolved.push(format!("{}:{}: {target} — {why}", file.display(), c.line));
            }
        }
    }
    let distinct: BTreeSet<&Target> = citations.iter().flat_map(|c| &c.targets).collect();
    println!(
        "{what}: {} citations, {} distinct targets checked, {} unresolved",
        citations.len(),
        distinct.len(),
        unresolved.len()
    );
    let list: Vec<String> = distinct.iter().map(ToString::to_string).collect();
    println!("targets: {}", list.join(", "));
    for u in &unresolved {
        println!("unresolved: {u}");
    }
    assert!(
        unresolved.is_empty(),
        "{} citation(s) in {what} do not resolve in docs/protocol.md:\n{}",
        unresolved.len(),
        unresolved.join("\n")
    );
}

#[test]
fn every_code_citation_resolves_in_protocol_md() {
    let root = workspace_root();
    let doc = protocol_doc(&root);
    let mut files = Vec::new();
    for member in MEMBERS {
        rust_files(&root.join(member), &mut files);
    }
    files.sort();
    let citations: Vec<Citation> = files
        .iter()
        .flat_map(|f| citations_in(f, &read(f)))
        .collect();
    assert!(
        citations.len() > 100,
        "only {} citations found: is the scan looking in the right place ({})?",
        citations.len(),
        root.display()
    );
    assert_resolved(&doc, &root, &citations, "the workspace's Rust sources");
}

#[test]
fn protocol_md_cites_only_its_own_sections() {
    let root = workspace_root();
    let doc = protocol_doc(&root);
    let mut citations = Vec::new();
    let docs = root.join("docs");
    for path in [
        docs.join("protocol.md"),
        docs.join("README.md"),
        docs.join("liveness.md"),
        docs.join("dmsg.md"),
        docs.join("guide.md"),
        root.join("README.md"),
    ] {
        let found = citations_in(&path, &read(&path));
        eprintln!("{}: {} citations", path.display(), found.len());
        citations.extend(found);
    }
    assert!(
        citations.len() > 50,
        "only {} citations found in the documents: is the scan reading them?",
        citations.len()
    );
    assert_resolved(&doc, &root, &citations, "docs/ and README.md");
}

#[test]
fn protocol_md_keeps_the_specification_numbering() {
    let root = workspace_root();
    let doc = protocol_doc(&root);
    let numbered: Vec<&str> = doc
        .sections
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("Appendix"))
        .collect();
    let mut expected = EXPECTED_SECTIONS.to_vec();
    expected.sort_unstable();
    assert_eq!(numbered, expected, "numbered headings of docs/protocol.md");
    for appendix in ["Appendix A", "Appendix B"] {
        assert!(doc.sections.contains_key(appendix), "{appendix} is missing");
    }
    for &(letter, last) in EXPECTED_ITEMS {
        for n in 1..=last {
            let target = Target::Item("11".into(), format!("{letter}{n}"));
            assert_eq!(doc.check(&target), None, "{target}");
        }
    }
}

#[test]
fn the_scanner_reads_every_citation_form() {
    let text = "//! see §3.6, §2.7–§2.9 and §4.1–4.2.\n\
                /// §11 T4; §11 H12: §11\n\
                /// R5) §2.5 steps 4–5, §10 item 7, §5 HEADER1 and §3.3). §7 `EOF`, §x\n";
    let got: Vec<String> = citations_in(Path::new("x.rs"), text)
        .iter()
        .flat_map(|c| c.targets.iter().map(|t| format!("{}:{t}", c.line)))
        .collect();
    let want = [
        "1:§3.6",
        "1:§2.7",
        "1:§2.9",
        "1:§4.1",
        "1:§4.2",
        "2:§11",
        "2:§11 T4",
        "2:§11",
        "2:§11 H12",
        "2:§11",
        "2:§11 R5",
        "3:§2.5",
        "3:§2.5 step/item 4",
        "3:§2.5 step/item 5",
        "3:§10",
        "3:§10 step/item 7",
        "3:§5",
        "3:§5 HEADER1",
        "3:§3.3",
        "3:§7",
    ];
    assert_eq!(got, want);
}

/// Every `dmsg.md N.N` the code cites is a heading of docs/dmsg.md.
#[test]
fn every_code_citation_of_dmsg_md_resolves() {
    let root = workspace_root();
    let doc = read(&root.join("docs/dmsg.md"));
    let headings: Vec<String> = doc
        .lines()
        .filter(|l| l.starts_with("## ") || l.starts_with("### "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    let mut files = Vec::new();
    for member in MEMBERS {
        rust_files(&root.join(member), &mut files);
    }
    let mut unresolved = Vec::new();
    let mut seen = 0;
    for file in &files {
        for (n, line) in read(file).lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("dmsg.md ") {
                rest = &rest[at + "dmsg.md ".len()..];
                let number: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let number = number.trim_end_matches('.');
                if number.is_empty() {
                    continue;
                }
                seen += 1;
                if !headings.iter().any(|h| h == number) {
                    unresolved.push(format!("{}:{}: dmsg.md {number}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(seen > 10, "the scan found the code's citations ({seen})");
    assert!(
        unresolved.is_empty(),
        "unresolved:\n{}",
        unresolved.join("\n")
    );
}
