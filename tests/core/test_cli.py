"""The command line as a new user meets it: readable defaults, --version everywhere, one-line mistakes."""

from __future__ import annotations

import argparse

import pytest

from exporters import __version__
from exporters.cli import SUBCOMMANDS, command_parser, main
from exporters.core.config import (
    Flag,
    FlagSet,
    format_duration,
    parse_listen_address,
    parse_netuid,
    positive_duration,
    positive_int,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(900.0, "15m"), (5400.0, "1h30m"), (0.25, "250ms"), (6 * 3600.0, "6h"), (30.0, "30s"), (86400.0, "1d")],
)
def test_durations_are_written_back_as_a_person_types_them(seconds, text):
    assert format_duration(seconds) == text


def _help_of(*flags: Flag) -> str:
    parser = argparse.ArgumentParser(prog="x")
    FlagSet(list(flags)).install(parser)
    return " ".join(parser.format_help().split())


def test_help_shows_defaults_as_typed_not_as_python_values():
    text = _help_of(
        Flag("web.listen-address", "Listen.", default=("0.0.0.0", 9927), convert=parse_listen_address),
        Flag("x.interval", "Every.", default=900.0, convert=positive_duration),
        Flag("x.keys", "Keys.", default=("a", "b")),
        Flag("x.file", "Unset file.", default=None),
        Flag("x.on", "Toggle.", default=True, is_bool=True),
    )
    assert "default 0.0.0.0:9927" in text and "('0.0.0.0', 9927)" not in text
    assert "default 15m" in text and "900.0" not in text
    assert "default a,b" in text
    assert "default None" not in text and "(env OPENCOMPUTE_X_FILE)" in text
    assert "default true" in text
    assert "--x.interval DURATION" in text  # a duration flag says what it takes


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_command_prints_its_version(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--version"])
    assert done.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_every_commands_help_renders_without_python_reprs(capsys):
    import importlib

    for name, (module_name, _) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        parser = command_parser(name, module)
        module.flags().install(parser)
        text = parser.format_help()
        assert "default None" not in text and "default (" not in text, name
        assert not any(f"default {v}" in text for v in ("900.0", "300.0", "60.0", "True", "False")), name


def test_an_unknown_flag_is_one_line_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as done:
        main(["miner", "--web.listen-adress", ":1"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2
    assert err.count("\n") == 0, err
    assert "unknown flag '--web.listen-adress'" in err
    assert "did you mean '--web.listen-address'?" in err and "--help" in err


def test_an_unknown_command_suggests_the_closest_one(capsys):
    with pytest.raises(SystemExit) as done:
        main(["minr"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.count("\n") == 0
    assert "unknown command 'minr'; did you mean 'miner'?" in err


def test_a_flag_without_its_value_says_so_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["miner", "--web.listen-address"])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--web.listen-address needs a value" in err


@pytest.mark.parametrize(
    ("convert", "text", "words"),
    [
        (parse_netuid, "abc", "is not a whole number; expected a netuid 0..65535, e.g. 27"),
        (parse_netuid, "70000", "out of range; expected a netuid 0..65535"),
        (positive_int, "zero", "not a whole number"),
        (positive_int, "0", "less than 1"),
        (parse_listen_address, "nonsense", "is not host:port; expected e.g. 0.0.0.0:9927"),
        (parse_listen_address, "host:http", "has no port number"),
    ],
)
def test_converters_say_what_was_given_what_is_expected_and_an_example(convert, text, words):
    with pytest.raises(ValueError) as err:
        convert(text)
    message = str(err.value)
    assert words in message and repr(text) in message
    assert "invalid literal" not in message


def test_the_demo_has_no_double_negative_flag():
    from exporters.demo import flags

    names = [f.name for f in flags().flags]
    assert "demo.prometheus" in names
    assert not any(".no-" in name or name.startswith("no-") for name in names)
