//! Figure E of `make bench`: cold start, from process start to the first
//! `GET /2018-06-01/runtime/invocation/next`.
//!
//! For every function in `functions/` and for the `lambda_runtime` hello-world
//! (`benches/hello-world`), all release bootstraps built by `benches/bench.sh`, this starts the
//! binary as Lambda does, against a Lambda Runtime API played here on a loopback port: a clean
//! environment holding the `AWS_LAMBDA_*` variables Lambda sets, the AWS settings of the private
//! moto (`scripts/aws-env.sh`: endpoint, dummy credentials in the environment, region) and the
//! functions' configuration as `make dev` gives it (the provisioned `functions.env`, whose
//! secrets are `ssm:` references stored in that moto). The time is taken when the runtime's
//! first request, which must be the `next` long-poll, has arrived: everything init does (tracing,
//! SDK configuration, secret resolution, clients, wiring) lies before it. The process is then
//! killed. Runs go round-robin over the binaries (after one unmeasured warm-up round), so noise
//! from the other work on the machine falls on all of them alike; the figure is the median.
//!
//! Printed: `bench init_<function> <ms> ms` with the function's name as in `functions/`
//! (`init_send-api`, `init_webhook-sendgrid`, …) and `bench init_hello_world <ms> ms`, plus a
//! `#` line per function with its ratio to the hello-world.
//!
//! Environment: `MAILGATE_COLD_START_BIN_DIR` (the release bootstraps),
//! `MAILGATE_COLD_START_ENV_FILE` (the provisioned `functions.env`), optionally
//! `MAILGATE_COLD_START_RUNS` (measured runs per binary, default 15); the `AWS_*` variables of the
//! private moto are passed through.

// Shared with the webhook benches; only `figure` is used here.
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use support::figure;

/// The request every runtime makes once init is done.
const NEXT: &str = "GET /2018-06-01/runtime/invocation/next ";
/// Longest a binary may take to ask for its first event.
const DEADLINE: Duration = Duration::from_secs(15);
/// The yardstick's binary (`benches/hello-world`) and figure name.
const HELLO_WORLD: (&str, &str) = ("hello-world", "hello_world");

fn main() -> anyhow::Result<()> {
    let bin_dir = PathBuf::from(required("MAILGATE_COLD_START_BIN_DIR")?);
    let env_file = PathBuf::from(required("MAILGATE_COLD_START_ENV_FILE")?);
    let runs: usize = match std::env::var("MAILGATE_COLD_START_RUNS") {
        Ok(v) => v.parse().context("MAILGATE_COLD_START_RUNS")?,
        Err(_) => 15,
    };
    let configuration = read_env_file(&env_file)?;
    let aws: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") && !k.starts_with("AWS_LAMBDA_"))
        .collect();
    if !aws.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL") {
        bail!(
            "AWS_ENDPOINT_URL is not set: the cold-start bench runs against the private moto only"
        );
    }

    // (binary, figure name)
    let mut binaries = vec![(HELLO_WORLD.0.to_owned(), HELLO_WORLD.1.to_owned())];
    for function in functions()? {
        binaries.push((function.clone(), function));
    }
    for (binary, _) in &binaries {
        let path = bin_dir.join(binary);
        if !path.is_file() {
            bail!("no release bootstrap {}", path.display());
        }
    }

    let stderr_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/cold_start");
    std::fs::create_dir_all(&stderr_dir)?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); binaries.len()];
    for round in 0..=runs {
        for (i, (binary, name)) in binaries.iter().enumerate() {
            let launch = Launch {
                binary: &bin_dir.join(binary),
                function_name: binary,
                configuration: &configuration,
                aws: &aws,
                stderr: &stderr_dir.join(format!("{name}.stderr")),
            };
            let elapsed = launch
                .time_to_first_next()
                .with_context(|| format!("cold start of {binary}"))?;
            // Round 0 warms the page cache and moto; it is not counted.
            if round > 0 {
                samples[i].push(elapsed.as_secs_f64() * 1e3);
            }
        }
    }

    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let hello = medians[0];
    println!(
        "# cold start: process start to the first invocation/next, median of {runs} runs each"
    );
    for ((_, name), (median, runs)) in binaries.iter().zip(medians.iter().zip(&samples)) {
        let (low, high) = (runs[0], runs[runs.len() - 1]);
        println!(
            "# init_{name}: {:.2}x hello world (runs {low:.1} to {high:.1} ms)",
            median / hello
        );
    }
    for ((_, name), median) in binaries.iter().zip(&medians) {
        figure(&format!("init_{name}"), format!("{median:.1}"), "ms");
    }
    Ok(())
}

fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run through `make bench`)"))
}

/// The functions: every directory in `functions/`, named as its bootstrap.
fn functions() -> anyhow::Result<Vec<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// `NAME=VALUE` lines, as `mailgate-local provision --env-file` writes them.
fn read_env_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// One cold start of one bootstrap.
struct Launch<'a> {
    binary: &'a Path,
    function_name: &'a str,
    configuration: &'a [(String, String)],
    aws: &'a [(String, String)],
    /// Where the process's stderr goes (shown when it fails).
    stderr: &'a Path,
}

impl Launch<'_> {
    /// Starts the process and waits for its first request to the Runtime API, which must be
    /// `next`; the time from just before the spawn to that request's arrival.
    fn time_to_first_next(&self) -> anyhow::Result<Duration> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        // The Runtime API side: the first request's line and when its head had arrived.
        let (tx, rx) = mpsc::channel();
        let server = std::thread::spawn(move || {
            let answer = first_request(&listener).map(|line| (Instant::now(), line));
            let _ = tx.send(answer);
        });

        let mut command = Command::new(self.binary);
        command
            .env_clear()
            .envs(self.configuration.iter().map(|(k, v)| (k, v)))
            .envs(self.aws.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", self.function_name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.function_name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start-bench")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("TZ", ":UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.stderr)?);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let outcome = self.wait(&mut child, &rx, started);
        let _ = child.kill();
        let _ = child.wait();
        // Unblocks the Runtime API thread if the process never connected.
        let _ = TcpStream::connect(address);
        let _ = server.join();
        outcome
    }

    fn wait(
        &self,
        child: &mut Child,
        answers: &mpsc::Receiver<std::io::Result<(Instant, String)>>,
        started: Instant,
    ) -> anyhow::Result<Duration> {
        loop {
            match answers.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok((arrived, line))) if line.starts_with(NEXT) => {
                    return Ok(arrived - started);
                }
                Ok(Ok((_, line))) => bail!(
                    "the first Runtime API request was `{line}`, not the next event (stderr: {})",
                    self.stderr_tail()
                ),
                Ok(Err(e)) => return Err(e).context("reading the Runtime API request"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the Runtime API thread died"),
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "exited ({status}) before asking for an event; stderr: {}",
                    self.stderr_tail()
                );
            }
            if started.elapsed() > DEADLINE {
                bail!(
                    "asked for no event within {DEADLINE:?}; stderr: {}",
                    self.stderr_tail()
                );
            }
        }
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.stderr).unwrap_or_default();
        let start = text.len().saturating_sub(2_000);
        text.get(start..).unwrap_or(&text).trim().to_owned()
    }
}

/// Accepts one connection and reads its request head; the request line.
fn first_request(listener: &TcpListener) -> std::io::Result<String> {
    let (stream, _) = listener.accept()?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head: `next` is a GET without a body, so the head's end is the request's.
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    Ok(request_line.trim_end().to_owned())
}
