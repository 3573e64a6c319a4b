//! `meridian completions SHELL` and `meridian man --out DIR`: shell completions and man pages,
//! both generated from the command-line definition ([`crate::cli::Cli`]) so they cannot drift
//! from the flags. The Debian package ships both (contrib/deb/build.sh).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{CommandError, EXIT_RUNTIME};
use crate::cli::Cli;

/// A page or the completion script could not be written (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct ManualError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl CommandError for ManualError {
    fn exit_code(&self) -> u8 {
        EXIT_RUNTIME
    }
}

/// Prints the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), ManualError> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "meridian", &mut out);
    std::io::stdout()
        .write_all(&out)
        .map_err(|source| ManualError {
            path: PathBuf::from("<stdout>"),
            source,
        })
}

/// Writes `meridian.1` and one page per visible subcommand, nested ones included
/// (`meridian-ctl-override.1`), into `dir`; prints the paths it wrote.
pub fn man_pages(dir: &Path) -> Result<(), ManualError> {
    std::fs::create_dir_all(dir).map_err(|source| ManualError {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    write_pages(Cli::command(), "meridian", dir, &mut written)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the page of `cmd` (named `name`: the path of subcommands joined by `-`) and,
/// recursively, of its visible subcommands.
fn write_pages(
    cmd: clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), ManualError> {
    let cmd = cmd.name(name.to_owned()).version(crate::cli::VERSION);
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .and_then(|()| std::fs::write(&path, &page))
        .map_err(|source| ManualError {
            path: path.clone(),
            source,
        })?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), &sub_name, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_page_per_visible_subcommand_naming_its_flags()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        man_pages(dir.path())?;
        let mut names: Vec<String> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for expected in [
            "meridian.1",
            "meridian-serve.1",
            "meridian-ctl.1",
            "meridian-probe.1",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        // Hidden subcommands (the lab's backend) get no page.
        assert!(
            !names.iter().any(|n| n.contains("lab-backend")),
            "{names:?}"
        );
        let serve = std::fs::read_to_string(dir.path().join("meridian-serve.1"))?;
        assert!(serve.contains(".TH meridian-serve 1"), "{serve}");
        assert!(
            serve.contains("dns\\-listen"),
            "the serve page lists its flags"
        );
        Ok(())
    }
}
