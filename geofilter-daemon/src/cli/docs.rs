//! `geofilter completions SHELL` and `geofilter manpages DIR`: shell completions and man pages
//! generated from the clap definitions in [`super::args`], so they can never drift from the
//! options the binary accepts (bpfman builds its pages the same way, with `clap_mangen`).

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::args::Cli;

/// Man pages go in section 8: geofilter is a system administration daemon that needs root.
const SECTION: &str = "8";

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "geofilter", out);
}

/// Writes `geofilter.8` and one page per visible verb, nested verbs included
/// (`geofilter-db.8`, `geofilter-db-update.8`...) into `dir`, creating it if needed. Returns the
/// files written, `geofilter.8` first.
pub fn manpages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Built once so every subcommand knows its full name (`geofilter db update`) and its page
    // name (`geofilter-db-update`); the `help` pseudo-verb gets no page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    Ok(written)
}

fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .manual("System Manager's Manual");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .and_then(|()| fs::write(&path, &page))
        .with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

/// Prints the completion script to standard output, as `geofilter completions bash >FILE`.
pub fn print_completions(shell: Shell) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    completions(shell, &mut stdout);
    stdout.flush().context("writing the completion script")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible verb path (`["db", "update"]`...) of the CLI.
    fn verbs(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_owned());
            verbs(sub, &path, out);
            out.push(path);
        }
    }

    #[test]
    fn every_verb_is_in_the_bash_completion_and_has_a_man_page() {
        let mut script = Vec::new();
        completions(Shell::Bash, &mut script);
        let script = String::from_utf8(script).expect("utf-8 completion script");
        let dir = tempfile::tempdir().expect("temp dir");
        let pages = manpages(dir.path()).expect("writing the man pages");
        assert_eq!(pages[0], dir.path().join("geofilter.8"));
        let mut all = Vec::new();
        verbs(&Cli::command(), &[], &mut all);
        assert!(all.len() > 20, "too few verbs found: {all:?}");
        for verb in &all {
            // clap_complete's bash script walks the words typed with one case arm per verb path:
            // `geofilter__subcmd__db,update)`.
            let (name, parent) = verb.split_last().expect("a verb path is never empty");
            let parent: String = parent.iter().map(|p| format!("__subcmd__{p}")).collect();
            let arm = format!("geofilter{parent},{name})");
            assert!(
                script.contains(&arm),
                "bash completion lacks `{}`",
                verb.join(" ")
            );
            let page = dir.path().join(format!("geofilter-{}.8", verb.join("-")));
            assert!(pages.contains(&page), "no man page {}", page.display());
        }
        // Hidden maintainer verbs stay out of the pages.
        assert!(!dir.path().join("geofilter-manpages.8").exists());
        assert!(!dir.path().join("geofilter-db-pack.8").exists());
    }
}
