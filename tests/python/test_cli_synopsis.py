"""README.md's synopsis (the block under "## Commands") against each command's --help.

For every command the synopsis lists, the set of flags it shows is the set `cellcube CMD
--help` shows in its usage lines (the lines before the first blank one), both ways; and
each --help's usage lines and its list of options name the same flags. So neither can
drift from the other (issue 23: `markers --direction` was in no synopsis).
"""
from __future__ import annotations

import re

import pytest

import helpers
from helpers import run_ok

FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
README = helpers.REPO / "README.md"

# `cellcube add STORE [build options]` in the README stands for build's options but -o
# (add writes to STORE itself); --help spells them out.
BUILD_OPTIONS = "[build options]"
# --memory-limit is the isolated commands' global flag: main.cc appends it below every
# such --help (and `cellcube --help` lists it) rather than in the usage lines, and the
# README gives it a paragraph of its own; test_memory_limit.py covers it.
GLOBAL = {"--memory-limit"}


def synopsis():
    """{command: synopsis text} from README.md's block under "## Commands"."""
    text = README.read_text()
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    out, current = {}, None
    for line in block.splitlines():
        if line.startswith("cellcube "):
            current = line.split()[1]
            assert current not in out, f"{current} twice in the synopsis"
            out[current] = line
        elif line.strip():
            assert current and line.startswith(" "), line
            out[current] += " " + line.strip()
    return out


def flags(text):
    return set(FLAG.findall(text))


def help_text(cellcube, command):
    return run_ok([cellcube, command, "--help"]).stdout


def usage_lines(text):
    head = text.split("\n\n", 1)[0]
    assert head.startswith("usage: cellcube "), head
    return head


def described(text):
    """The flags the --help's option list describes: each line that starts (indented)
    with a flag names one or more ("-o, --output STORE", "--test, --donor, ...")."""
    out = set()
    for line in text.splitlines():
        m = re.match(r"^ +((?:--?[A-Za-z][\w-]*,? ?)+)", line)
        if m:
            out |= flags(m.group(1))
    return out


def test_the_synopsis_lists_every_command(cellcube):
    listed = set(synopsis())
    top = run_ok([cellcube, "--help"]).stdout.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    commands = {line.split()[0] for line in top.splitlines() if line.strip()}
    assert listed == commands, (sorted(listed - commands), sorted(commands - listed))


@pytest.mark.parametrize("command", sorted(synopsis()))
def test_synopsis_flags_equal_the_help_usage(cellcube, command):
    text = synopsis()[command]
    readme = flags(text.replace(BUILD_OPTIONS, ""))
    if BUILD_OPTIONS in text:
        readme |= flags(synopsis()["build"]) - {"-o"}
    usage = flags(usage_lines(help_text(cellcube, command)))
    assert readme == usage, (f"README.md only: {sorted(readme - usage)}; "
                             f"--help only: {sorted(usage - readme)}")
    assert not (readme & GLOBAL)


@pytest.mark.parametrize("command", sorted(synopsis()))
def test_help_usage_and_option_list_agree(cellcube, command):
    text = help_text(cellcube, command)
    usage = flags(usage_lines(text))
    options = described(text.split("\n\n", 1)[1]) - {"-h", "--help", "--output"} - GLOBAL
    assert usage == options, (f"usage only: {sorted(usage - options)}; "
                              f"options only: {sorted(options - usage)}")
