//! `mca-attest completions bash`, installed the way `completions --help` says (one line in
//! ~/.bashrc), completes in a real interactive bash: the test types into bash on a tmux
//! pseudo-terminal and reads the screen.
//!
//! tmux comes from `apt-get install tmux` (.ci/run installs it); without it the test skips with
//! a printed reason, except in CI, where it fails.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::Workdir;

/// The install line for bash that `completions --help` gives.
const BASHRC_LINE: &str = "source <(mca-attest completions bash)";

/// The prompt of the test's bash, to tell that it is ready (tmux drops a line's trailing
/// spaces, so the screen shows it without its space, and a completed word without its own).
const PROMPT: &str = "ready$ ";

/// How long a screen may take to show what is expected before the test fails (a bound for a
/// hung shell, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

/// One tmux server on its own socket, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// None when tmux is not installed outside CI.
    fn start(dir: &Path) -> Option<Tmux> {
        if let Err(e) = Command::new("tmux").arg("-V").output() {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is needed in CI (apt-get install tmux): {e}"
            );
            eprintln!("skipped: tmux is not installed ({e}); apt-get install tmux");
            return None;
        }
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(crate::common::binary(), bin.join("mca-attest")).unwrap();
        let rc = dir.join("bashrc");
        std::fs::write(&rc, format!("PS1='{PROMPT}'\n{BASHRC_LINE}\n")).unwrap();
        let socket = format!(
            "mca-attest-completion-{}-{}",
            std::process::id(),
            dir.file_name().unwrap().to_string_lossy()
        );
        let tmux = Tmux { socket };
        let shell = format!(
            "env -i HOME='{home}' PATH='{bin}:/usr/bin:/bin' TERM=xterm bash --noprofile --rcfile '{rc}' -i",
            home = dir.display(),
            bin = bin.display(),
            rc = rc.display(),
        );
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            &shell,
        ]);
        tmux.wait_for_screen(|screen| screen.contains(PROMPT.trim_end()), "the prompt");
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        out
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Types `text` literally, then presses Tab `tabs` times.
    fn type_and_tab(&self, text: &str, tabs: usize) {
        self.run(&["send-keys", "-l", text]);
        for _ in 0..tabs {
            self.run(&["send-keys", "Tab"]);
        }
    }

    /// Polls the screen until `ready` holds for it; fails the test with the screen after
    /// [`PATIENCE`].
    fn wait_for_screen(&self, ready: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not appear; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// What is typed, how many times Tab is pressed, and what the screen must then show: the
/// command line completed (one candidate) or the candidates listed (several, after two Tabs).
struct Case {
    typed: &'static str,
    tabs: usize,
    shows: &'static [&'static str],
}

const CASES: [Case; 7] = [
    Case {
        typed: "mca-attest con",
        tabs: 1,
        shows: &["mca-attest confirm"],
    },
    Case {
        typed: "mca-attest val",
        tabs: 1,
        shows: &["mca-attest validate"],
    },
    Case {
        typed: "mca-attest rep",
        tabs: 1,
        shows: &["mca-attest report"],
    },
    Case {
        typed: "mca-attest c",
        tabs: 2,
        shows: &["confirm", "customers", "completions"],
    },
    Case {
        typed: "mca-attest confirm --re",
        tabs: 2,
        shows: &["--resume", "--redact", "--refresh-cutoff"],
    },
    Case {
        typed: "mca-attest confirm --res",
        tabs: 1,
        shows: &["mca-attest confirm --resume"],
    },
    Case {
        typed: "mca-attest status --all",
        tabs: 1,
        shows: &["mca-attest status --all-customers"],
    },
];

#[test]
fn bash_installed_as_the_help_says_completes_subcommands_and_flags() {
    let wd = Workdir::new();
    let help = wd.command(["completions", "--help"]).run();
    help.expect_code(0).expect_stdout_contains(BASHRC_LINE);
    for line in [
        "mca-attest completions fish > ~/.config/fish/completions/mca-attest.fish",
        "mca-attest completions powershell | Out-String | Invoke-Expression",
        "source <(mca-attest completions zsh)",
    ] {
        help.expect_stdout_contains(line);
    }

    // Each case in a fresh shell, so nothing typed before is on the screen.
    for (n, case) in CASES.iter().enumerate() {
        let dir = wd.path(&format!("shell-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let Some(tmux) = Tmux::start(&dir) else {
            return;
        };
        tmux.type_and_tab(case.typed, case.tabs);
        let screen = tmux.wait_for_screen(
            |screen| case.shows.iter().all(|s| screen.contains(s)),
            &format!("the completion of {:?}", case.typed),
        );
        // The typed line itself stays on screen; nothing went wrong in the script.
        assert!(
            !screen.contains("command not found") && !screen.contains("syntax error"),
            "{:?}: {screen}",
            case.typed
        );
    }
}
