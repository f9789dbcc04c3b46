"""The TrainRun history's worst case, from the constants that drive it (no emulator needed).

Worst case: every attempt's boot polls until just before both deadlines (CheckInstance until
INSTANCE_READY_TIMEOUT_SECONDS after launch, CheckBootstrap until BOOTSTRAP_TIMEOUT_SECONDS after
the install was sent) and then goes on, for as many attempts as a run can have (the RunSpec's
preemptions and retries together, plus runctl's own agent-start and GPU retries). `make bench`
prints it; tests/unit/bench/test_history_budget.py fails when a change to the polling, the
deadlines or the cap takes it over Step Functions' 25,000 events.
"""

from __future__ import annotations

from typing import Final

from lambdas.env import LambdaEnv
from lambdas.functions import TRAIN_RUN_SETTINGS
from lambdas.logic.image_builds import BUILD_TIMEOUT_SECONDS
from lambdas.logic.next_attempt import AGENT_START_RETRIES, GPU_RETRIES
from lambdas.logic.polling import MAX_BUILD_POLL_SECONDS, MAX_POLL_SECONDS, next_poll_seconds
from lambdas.models.run_spec import MAX_RESUMES, InterruptionPolicy

HISTORY_LIMIT: Final = 25_000
# A boot poll is a Wait, a Lambda Task and a Choice: 2 + 5 + 2 history events.
EVENTS_PER_POLL: Final = 9
# Events of one resume without its boot polls (PlanNextAttempt, LaunchInstance, the first Waits,
# BootstrapInstance, the release of the previous attempt, Train): bench's measured ~90 events per
# interruption less the 6 polls (54 events) of its typical boot is ~36; rounded up.
EVENTS_PER_RESUME_WITHOUT_POLLS: Final = 40
# A run's own events without its boot polls (Init, ValidateRun, RecordRun, ..., FinalizeRun):
# bench's ~100 for a run less its 54 typical-boot events is ~46; rounded up.
EVENTS_PER_RUN_WITHOUT_POLLS: Final = 50


def _polls_until(
    first_wait: float,
    deadline: float,
    base: int,
    waited: float = 0.0,
    max_wait: int = MAX_POLL_SECONDS,
) -> tuple[int, float]:
    """Polls from `waited` (seconds since launch) until one comes after `deadline`."""
    polls, waited = 1, waited + first_wait
    while waited <= deadline:
        waited += next_poll_seconds(base, waited, max_wait)
        polls += 1
    return polls, waited


def worst_case_boot_polls(env: LambdaEnv | None = None) -> int:
    """Polls of a boot that is ready only at both deadlines (the settings `cdk deploy` uses)."""
    env = env or LambdaEnv.model_construct()
    first = int(TRAIN_RUN_SETTINGS["FirstPollSeconds"])
    base = int(TRAIN_RUN_SETTINGS["PollIntervalSeconds"])
    instance_polls, waited = _polls_until(first, env.INSTANCE_READY_TIMEOUT_SECONDS, base)
    bootstrap_polls, _ = _polls_until(
        base, waited + env.BOOTSTRAP_TIMEOUT_SECONDS, base, waited=waited
    )
    return instance_polls + bootstrap_polls


def worst_case_build_polls() -> int:
    """BuildImage calls of an image build that runs to CodeBuild's timeout (once per run, before
    the first launch): the call that starts it, then a poll backing off like a boot's."""
    base = int(TRAIN_RUN_SETTINGS["PollIntervalSeconds"])
    polls, _ = _polls_until(base, BUILD_TIMEOUT_SECONDS, base, max_wait=MAX_BUILD_POLL_SECONDS)
    return 1 + polls


def max_interruptions_cap() -> int:
    metadata = InterruptionPolicy.model_fields["max_interruptions"].metadata
    return int(next(item.le for item in metadata if hasattr(item, "le")))


def max_resumes() -> int:
    """Attempts after the first a run can have: what its RunSpec may ask (preemptions and script
    retries together) and the ones runctl adds (agent starts, a GPU that does not answer)."""
    return MAX_RESUMES + AGENT_START_RETRIES + GPU_RETRIES


def worst_case_history_events(resumes: int | None = None) -> int:
    """History events of a run whose every boot runs to its deadlines, after `resumes` further
    attempts (default: the most a run can have)."""
    resumes = max_resumes() if resumes is None else resumes
    boot = worst_case_boot_polls() * EVENTS_PER_POLL
    build = worst_case_build_polls() * EVENTS_PER_POLL
    return (
        EVENTS_PER_RUN_WITHOUT_POLLS
        + build
        + boot
        + resumes * (EVENTS_PER_RESUME_WITHOUT_POLLS + boot)
    )
