#!/usr/bin/env python3
"""`make test` without arguments: every test binary of the workspace, run in parallel on isolated stacks.

cargo runs test binaries one after another against one emulator, so the suite's time is the sum of
its binaries' and moto's memory grows with everything the suite writes (its TransactWriteItems deep-
copies every table it touches, per item). Here each of N workers owns a private moto (its own port
and state directory, provisioned like `make dev`'s) and takes the next binary from a queue, longest
first; binaries never share a moto while running. Doc tests run as one more job. Each binary's output
is printed whole when it finishes, in cargo's own format, and the run closes with the line
`tests: N passed, N failed`.

Settings (environment): MAILGATE_TEST_STACKS (workers and private stacks, default 4).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACKS = max(1, int(os.environ.get("MAILGATE_TEST_STACKS", "4")))

# Binaries known to take longest go first, so no worker is left with a long one at the end
# (on 4 stacks, 2 cores: chaos about 160 s, search 85 s, the rest under 20 s each).
SLOW_FIRST = ["chaos", "search", "webhooks", "send_api"]

print_lock = threading.Lock()


def say(text):
    with print_lock:
        print(text, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(endpoint):
    """What scripts/aws-env.sh exports: the SDKs pointed at the emulator, no real profile."""
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        env.pop(name, None)
    env.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MAILGATE_TEST_AWS_ENDPOINT": endpoint,
    })
    return env


class Stack:
    """One private moto, provisioned by scripts/local-stack.sh."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.state = ROOT / "target" / "test-stack" / str(self.port)

    def _script(self, action):
        env = dict(os.environ, MAILGATE_AWS_PORT=str(self.port), MAILGATE_STATE_DIR=str(self.state),
                   MAILGATE_ENVIRONMENT="test")
        return subprocess.run([str(ROOT / "scripts" / "local-stack.sh"), action], env=env,
                              cwd=ROOT, capture_output=True, text=True)

    def start(self):
        self.state.mkdir(parents=True, exist_ok=True)
        done = self._script("start")
        if done.returncode != 0:
            raise RuntimeError(f"the stack on {self.endpoint} did not start:\n{done.stdout}{done.stderr}")
        say(f"==> private stack on {self.endpoint} provisioned")

    def stop(self):
        self._script("stop")
        subprocess.run(["rm", "-rf", str(self.state)])


def build():
    """Builds every test binary; returns them as jobs (name, command, cwd, extra env)."""
    say("==> building every test binary of the workspace")
    proc = subprocess.Popen(
        ["cargo", "test", "--locked", "--workspace", "--no-run",
         "--message-format=json-render-diagnostics"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    jobs = []
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg["profile"]["test"]:
            continue
        target = msg["target"]
        manifest_dir = str(Path(msg["manifest_path"]).parent)
        src = os.path.relpath(target["src_path"], manifest_dir)
        label = f"tests/{target['name']}.rs" if "test" in target["kind"] else f"unittests {src}"
        package = re.sub(r"[#@].*$", "", msg["package_id"].rsplit("/", 1)[-1])
        jobs.append({
            "key": target["name"],
            "label": f"Running {label} ({msg['executable']})",
            "cmd": [msg["executable"]],
            "cwd": manifest_dir,
            "env": {"CARGO_MANIFEST_DIR": manifest_dir, "CARGO_PKG_NAME": package},
        })
    if proc.wait() != 0:
        say("error: the test binaries did not build")
        sys.exit(101)
    jobs.append({
        "key": "doc-tests",
        "label": "Doc-tests (cargo test --workspace --doc)",
        "cmd": ["cargo", "test", "--locked", "--workspace", "--doc"],
        "cwd": str(ROOT),
        "env": {},
    })

    def order(job):
        key = job["key"]
        return (SLOW_FIRST.index(key) if key in SLOW_FIRST else len(SLOW_FIRST), key)

    return sorted(jobs, key=order)


RESULT = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed")


def main():
    jobs = build()
    stacks = [Stack() for _ in range(STACKS)]
    stopping = threading.Event()

    def stop_all(*_):
        stopping.set()
        for stack in stacks:
            stack.stop()

    def on_signal(signum, _frame):
        stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        say(f"==> starting {STACKS} private stacks (moto on loopback, one per worker)")
        # The first provisions alone (it builds the provisioning tool); the rest start together.
        stacks[0].start()
        errors = []
        starters = [threading.Thread(target=_guard, args=(errors, s.start)) for s in stacks[1:]]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if errors:
            raise errors[0]

        queue = list(jobs)
        queue_lock = threading.Lock()
        totals = {"passed": 0, "failed": 0}
        failed = []
        started = time.monotonic()

        def worker(stack):
            while not stopping.is_set():
                with queue_lock:
                    if not queue:
                        return
                    job = queue.pop(0)
                began = time.monotonic()
                env = aws_env(stack.endpoint)
                env.update(job["env"])
                done = subprocess.run(job["cmd"], cwd=job["cwd"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, errors="replace")
                passed = fails = 0
                for line in done.stdout.splitlines():
                    m = RESULT.match(line)
                    if m:
                        passed += int(m.group(1))
                        fails += int(m.group(2))
                with print_lock:
                    print(f"     {job['label']} [stack :{stack.port}, {time.monotonic() - began:.1f} s]")
                    print(done.stdout, end="" if done.stdout.endswith("\n") else "\n", flush=True)
                    totals["passed"] += passed
                    totals["failed"] += fails
                    if done.returncode != 0:
                        failed.append(job["label"])

        workers = [threading.Thread(target=worker, args=(s,)) for s in stacks]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        say(f"==> every test binary ran in {time.monotonic() - started:.0f} s on {STACKS} stacks")
        for label in failed:
            say(f"FAILED: {label}")
        say(f"tests: {totals['passed']} passed, {totals['failed']} failed")
        return 1 if failed else 0
    finally:
        stop_all()


def _guard(errors, start):
    try:
        start()
    except Exception as error:  # reported by the caller after the join
        errors.append(error)


if __name__ == "__main__":
    sys.exit(main())
