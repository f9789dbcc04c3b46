"""The shell scripts sent over SSM: install the agent, start it detached, and write a notice
(spot warning, rebalance, stop request) for it.

All are fixed text. The only values in them are ours (bucket URIs, region, run id and attempt,
the notice's JSON), and each is passed through shlex.quote; user-supplied strings (args,
hyperparameters) never appear here: the agent reads them from its config in S3 and hands them to
the script as an argv list.
"""

from __future__ import annotations

import hashlib
import json
import shlex

from lambdas.constants import agent_config_key
from lambdas.integrations.ssm_commands import SsmCommands

# $RUNCTL_HOME lets local mode run the same scripts inside a per-instance directory.
_PRELUDE = [
    "set -euo pipefail",
    'export RUNCTL_HOME="${RUNCTL_HOME:-/opt/runctl}"',
    'mkdir -p "$RUNCTL_HOME"',
    'cd "$RUNCTL_HOME"',
]

# The whole install holds a lock (a retried BootstrapInstance may send a second one while the
# first runs). It unpacks into a fresh directory, swapped in whole: the old agent is renamed
# aside first, so a failed install never leaves half an agent. A download that fails or
# arrives corrupt is fetched again; staging left by a killed install is removed.
# One Python does it all (boto3's check, the fetch, the new agent's import check): each Python
# that imports boto3 costs a few hundred ms of CPU at boot, and local sweeps boot many at once.
NO_BOTO3_EXIT = 3
_DOWNLOAD_AGENT = f"""\
import glob, os, shutil, sys, tempfile, time, zipfile
try:
    import boto3
except ImportError:
    sys.exit({NO_BOTO3_EXIT})
uri, region, home = sys.argv[1], sys.argv[2], sys.argv[3]
pause = float(os.environ.get("RUNCTL_INSTALL_RETRY_SECONDS", "2"))
bucket, key = uri[len("s3://"):].split("/", 1)
for stale in glob.glob(os.path.join(home, ".agent-*")):
    shutil.rmtree(stale, ignore_errors=True)
s3 = boto3.client("s3", region_name=region)
target = os.path.join(home, "instance_agent")
for attempt in range(1, 4):
    staging = tempfile.mkdtemp(prefix=".agent-", dir=home)
    try:
        archive = os.path.join(staging, "agent.zip")
        s3.download_file(bucket, key, archive)
        with zipfile.ZipFile(archive) as zipped:
            corrupt = zipped.testzip()
            if corrupt is not None:
                raise zipfile.BadZipFile("corrupt member " + corrupt)
            zipped.extractall(os.path.join(staging, "new"))
        break
    except Exception as error:
        shutil.rmtree(staging, ignore_errors=True)
        if attempt == 3:
            raise
        print("install attempt", attempt, "failed:", repr(error), file=sys.stderr)
        time.sleep(pause * attempt)
if os.path.exists(target):
    os.replace(target, os.path.join(staging, "old"))
os.replace(os.path.join(staging, "new"), target)
shutil.rmtree(staging, ignore_errors=True)
print("agent installed in", target)
sys.path.insert(0, home)
import instance_agent  # noqa: E402 - the new agent imports under this Python
print("agent import ok")"""


def install_agent_script(agent_s3_uri: str, region: str) -> list[str]:
    """Make sure python3 has boto3 (stock AL2023 may lack it), then fetch and unpack the agent,
    all under one lock."""
    return [
        *_PRELUDE,
        'exec 9>"$RUNCTL_HOME/install.lock"',
        "flock -w 600 9",
        "fetch_agent() {",
        f'python3 - {shlex.quote(agent_s3_uri)} {shlex.quote(region)} "$RUNCTL_HOME" '
        "<<'RUNCTL_PY'",
        _DOWNLOAD_AGENT,
        "RUNCTL_PY",
        "}",
        "status=0",
        "fetch_agent || status=$?",
        f'if [ "$status" = {NO_BOTO3_EXIT} ]; then',
        "  if command -v dnf >/dev/null 2>&1; then dnf install -y -q python3-boto3; "
        "else python3 -m pip install -q boto3; fi",
        "  fetch_agent",
        'elif [ "$status" != 0 ]; then',
        '  exit "$status"',
        "fi",
    ]


# The agent writes its pid to this file as soon as it runs (instance_agent/main.py,
# --started-file); the start script prints this word with it once the file is there, and
# StartAgent looks for the word in the command's output.
AGENT_STARTED = "runctl-agent-started"
# How long the start script waits for the agent's pid file. Python and boto3 import in about a
# second on an idle instance; StartAgent's own bound (agent_start.py) must exceed this.
START_CONFIRM_SECONDS = 20
_CONFIRM_TICK_SECONDS = 0.2


def agent_tag(run_id: str, attempt: int) -> str:
    """Names the attempt's agent unit, lock and pid files: from a hash, so a fixed alphabet
    whatever the run id holds."""
    return hashlib.sha256(f"{run_id}/{attempt}".encode()).hexdigest()[:16]


def start_agent_script(
    bucket: str,
    run_id: str,
    attempt: int,
    region: str,
    confirm_seconds: float = START_CONFIRM_SECONDS,
) -> list[str]:
    """Start the agent detached from the SSM command, at most once per attempt (flock), and
    exit 0 only once the agent has written its pid file (a start that never ran fails here)."""
    config_uri = f"s3://{bucket}/{agent_config_key(run_id, attempt)}"
    tag = agent_tag(run_id, attempt)
    started = f'"$RUNCTL_HOME/agent-{tag}.started"'
    agent = (
        f'flock -n "$RUNCTL_HOME/agent-{tag}.lock" python3 -m instance_agent '
        f"--started-file {started} --config {shlex.quote(config_uri)}"
    )
    ticks = max(int(confirm_seconds / _CONFIRM_TICK_SECONDS), 1)
    return [
        *_PRELUDE,
        f"export AWS_DEFAULT_REGION={shlex.quote(region)}",
        f"started={started}",
        # A pid file whose agent is gone is from an earlier start of this attempt: it must not
        # confirm this one. A live one means this attempt's agent runs already (a retried
        # StartAgent; flock keeps the second from starting): that is a confirmation.
        'if [ -e "$started" ] && ! kill -0 "$(cat "$started" 2>/dev/null)" 2>/dev/null; then',
        '  rm -f "$started"',
        "fi",
        # systemd keeps the agent alive beyond the SSM command; local mode has no systemd.
        'if [ -z "${RUNCTL_NO_SYSTEMD:-}" ] && command -v systemd-run >/dev/null 2>&1 '
        "&& [ -d /run/systemd/system ]; then",
        '  launcher=""',
        f"  systemd-run --unit runctl-agent-{tag} --collect "
        f'--working-directory "$RUNCTL_HOME" --setenv=AWS_DEFAULT_REGION={shlex.quote(region)} '
        f'--setenv=RUNCTL_HOME="$RUNCTL_HOME" /bin/bash -c {shlex.quote(agent)}',
        "else",
        f'  setsid nohup /bin/bash -c {shlex.quote(agent)} >>"$RUNCTL_HOME/agent-{tag}.out" '
        "2>&1 </dev/null &",
        "  launcher=$!",
        "fi",
        f"why='the agent did not start within {confirm_seconds:g} s'",
        f"for _ in $(seq {ticks}); do",
        '  if [ -s "$started" ]; then',
        f'    echo "{AGENT_STARTED} attempt {int(attempt)} pid $(cat "$started")"',
        "    exit 0",
        "  fi",
        # Gone without a pid file (flock refused, python3 or the agent missing): no use waiting.
        '  if [ -n "$launcher" ] && ! kill -0 "$launcher" 2>/dev/null; then',
        "    why='the agent exited before it started'",
        "    break",
        "  fi",
        f"  sleep {_CONFIRM_TICK_SECONDS}",
        "done",
        'echo "$why" >&2',
        f'tail -n 20 "$RUNCTL_HOME/agent-{tag}.out" >&2 2>/dev/null || true',
        "exit 1",
    ]


def notice_script(notice: dict[str, str | None]) -> list[str]:
    """Write $RUNCTL_HOME/notice.json for the agent (whole file or none: temp name, rename)."""
    body = json.dumps(notice, sort_keys=True)
    return [
        *_PRELUDE,
        f"printf '%s' {shlex.quote(body)} > \"$RUNCTL_HOME/.notice.json.tmp\"",
        'mv -f "$RUNCTL_HOME/.notice.json.tmp" "$RUNCTL_HOME/notice.json"',
        "echo 'notice delivered'",
    ]


# An SSM command that only writes a file: a minute is plenty, and a late one is useless.
NOTICE_TIMEOUT_SECONDS = 60


def send_notice(
    commands: SsmCommands,
    instance_id: str,
    kind: str,
    notice_time: str,
    termination_time: str | None,
    source: str,
    comment: str,
) -> None:
    """Tell the agent on `instance_id`: it reads notice.json as it reads IMDS."""
    notice = {
        "kind": kind,
        "notice_time": notice_time,
        "termination_time": termination_time,
        "source": source,
    }
    commands.run_shell(
        instance_id, notice_script(notice), comment=comment, timeout_seconds=NOTICE_TIMEOUT_SECONDS
    )
