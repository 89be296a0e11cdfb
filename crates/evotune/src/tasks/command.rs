//! Rewards computed by an external program.
//!
//! Protocol: the program (run as `sh -c COMMAND`, in its own process group) reads one JSON object
//! per line on stdin, `{"prompt": …, "completion": …, "answer": …}`, and writes one reward per line
//! on stdout, in the same order (blank lines are ignored). It must exit with status 0 within the
//! timeout; otherwise the whole process group is killed. Every failure — crash, non-zero exit,
//! hang, wrong number of lines, a line that is not a finite number — is an
//! [`Error::RewardCommand`] naming the command and what went wrong, never a silent zero.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// One line sent to the program.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommandRecord<'a> {
    pub prompt: &'a str,
    pub completion: &'a str,
    pub answer: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CommandReward {
    pub command: String,
    pub timeout: Duration,
}

/// Reads a pipe to the end on its own thread; the result arrives on the returned channel.
fn drain<R: Read + Send + 'static>(mut pipe: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Kills the process group led by `pid` (the program and anything it started).
fn kill_group(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
}

impl CommandReward {
    pub fn new(command: &str, timeout_s: f64) -> Result<CommandReward> {
        if command.trim().is_empty() {
            return Err(Error::RewardCommand { command: command.into(), problem: "the command is empty".into() });
        }
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(Error::RewardCommand {
                command: command.into(),
                problem: format!("timeout must be a positive number of seconds, got {timeout_s}"),
            });
        }
        Ok(CommandReward { command: command.to_string(), timeout: Duration::from_secs_f64(timeout_s) })
    }

    fn err(&self, problem: impl Into<String>) -> Error {
        Error::RewardCommand { command: self.command.clone(), problem: problem.into() }
    }

    /// Runs the program once over all records; returns one finite reward per record.
    pub fn run(&self, records: &[CommandRecord<'_>]) -> Result<Vec<f32>> {
        let mut input = Vec::new();
        for r in records {
            serde_json::to_writer(&mut input, r).map_err(|e| self.err(format!("encoding input: {e}")))?;
            input.push(b'\n');
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&self.command).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(|e| self.err(format!("could not start `sh -c`: {e}")))?;
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A program that stops reading early gets EPIPE here; its exit status and line count
        // then tell what went wrong, so the write error itself is not reported.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));

        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(pid);
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(
                        self.err(format!("did not finish within {:.1} s and was killed", self.timeout.as_secs_f64()))
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => return Err(self.err(format!("waiting for the program: {e}"))),
            }
        };
        // Output pipes close when the program exits, unless it left a child holding them.
        let grace = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(200));
        let out = stdout.recv_timeout(grace);
        if out.is_err() {
            kill_group(pid);
        }
        let err_text = stderr.recv_timeout(Duration::from_millis(200)).unwrap_or_default();
        let err_tail = {
            let s = String::from_utf8_lossy(&err_text);
            let s = s.trim();
            let start = s.char_indices().rev().nth(400).map(|(i, _)| i).unwrap_or(0);
            s[start..].to_string()
        };
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal (crashed)".to_string(),
            };
            return Err(self.err(format!("{how}; stderr: {err_tail:?}")));
        }
        let out = out.map_err(|_| self.err("exited but its output stayed open (a background process holds stdout)"))?;
        let text = String::from_utf8(out).map_err(|_| self.err("output is not UTF-8"))?;
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.len() != records.len() {
            return Err(self.err(format!(
                "wrote {} reward lines for {} completions; stderr: {err_tail:?}",
                lines.len(),
                records.len()
            )));
        }
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| match line.parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                Ok(v) => Err(self.err(format!("output line {}: reward {v} is not finite", i + 1))),
                Err(_) => Err(self.err(format!("output line {}: `{line}` is not a number", i + 1))),
            })
            .collect()
    }
}
