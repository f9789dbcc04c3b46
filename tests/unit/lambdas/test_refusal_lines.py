"""summarize_refusals: the lines LaunchInstance writes with the attempt (and puts in
CapacityUnavailable's message), bounded for the run item: at most MAX_REFUSED_LINES lines of at
most MAX_REFUSED_LINE_BYTES each (docs/architecture.md, "Payload limits")."""

from __future__ import annotations

from lambdas.logic.launch_plan import (
    MAX_REFUSED_LINE_BYTES,
    MAX_REFUSED_LINES,
    LaunchOption,
    summarize_refusals,
)

CODE = "InsufficientInstanceCapacity"


def _refused(
    types: list[str], zones: list[str], market: str = "spot"
) -> list[tuple[LaunchOption, str]]:
    return [
        (LaunchOption(name, f"subnet-{zone}", zone, market), CODE)
        for zone in zones
        for name in types
    ]


def test_given_few_refusals_when_summarized_then_one_line_per_market_type_and_reason():
    refusals = _refused(["g5.xlarge", "g4dn.xlarge"], ["us-east-1a", "us-east-1b"])

    assert summarize_refusals(refusals) == [
        f"spot g5.xlarge in us-east-1a, us-east-1b: {CODE}",
        f"spot g4dn.xlarge in us-east-1a, us-east-1b: {CODE}",
    ]


def test_given_more_lines_than_kept_when_summarized_then_the_first_ones_and_how_many_more():
    # Given 20 types refused in both markets: 40 lines
    types = [f"g{index}.xlarge" for index in range(20)]
    refusals = _refused(types, ["us-east-1a"]) + _refused(types, ["us-east-1a"], "on-demand")

    # When summarized
    lines = summarize_refusals(refusals)

    # Then the first lines in the order tried, then a count of the rest
    kept = MAX_REFUSED_LINES - 1
    assert len(lines) == MAX_REFUSED_LINES == 8
    assert lines[:kept] == [f"spot {name} in us-east-1a: {CODE}" for name in types[:kept]]
    assert lines[-1] == f"… and {40 - kept} more"


def test_given_exactly_as_many_lines_as_kept_when_summarized_then_all_are_whole():
    types = [f"g{index}.xlarge" for index in range(MAX_REFUSED_LINES)]

    lines = summarize_refusals(_refused(types, ["us-east-1a"]))

    assert lines == [f"spot {name} in us-east-1a: {CODE}" for name in types]


def test_given_zones_too_many_to_list_when_summarized_then_the_line_counts_them():
    # Given a 40-character type refused in 12 Local Zones: listed, the line would pass the cap
    name = "x" * 30 + "01.xlarge"
    zones = [f"us-west-2-lax-{index}a" for index in range(12)]
    assert len(f"on-demand {name} in {', '.join(zones)}: {CODE}") > MAX_REFUSED_LINE_BYTES

    # When summarized
    lines = summarize_refusals(_refused([name], zones, "on-demand"))

    # Then the line names how many zones, and keeps the type and the reason
    assert lines == [f"on-demand {name} in 12 zones: {CODE}"]


def test_given_every_option_refused_everywhere_then_every_line_is_within_its_bytes():
    types = [f"{'x' * 30}{index:02d}.xlarge" for index in range(20)]
    zones = [f"ap-southeast-2-akl-{index}a" for index in range(30)] + ["us-east-1a"]

    lines = summarize_refusals(_refused(types, zones) + _refused(types, zones, "on-demand"))

    assert max(len(line.encode()) for line in lines) <= MAX_REFUSED_LINE_BYTES


def test_given_a_line_too_long_even_with_its_zone_count_then_it_is_cut_with_an_ellipsis():
    # Not a RunSpec's type (at most 40 characters): the cap holds whatever LaunchOption carries
    name = "g" * 200 + ".xlarge"

    (line,) = summarize_refusals(_refused([name], ["us-east-1a"]))

    assert line.startswith("spot ggg") and line.endswith("…")
    assert len(line.encode()) <= MAX_REFUSED_LINE_BYTES
