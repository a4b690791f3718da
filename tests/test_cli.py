"""The `keras-lopt` command line: help and version without TensorFlow,
defaults in every help text, and a quiet import of keras_lopt."""

import argparse
import os
import subprocess
import sys

import pytest

import keras_lopt_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, **env):
    environment = dict(os.environ, PYTHONPATH=REPO, **env)
    for name, value in env.items():
        if value is None:
            del environment[name]
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=REPO, timeout=300
    )


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["plot", "probes", "--help"], ["meta-train", "--help"], ["benchmark", "--steps", "x"]],
)
def test_help_version_and_bad_arguments_do_not_import_tensorflow(argv):
    code = (
        "import sys, keras_lopt_cli\n"
        "try:\n"
        f"    keras_lopt_cli.main({argv!r})\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "print('EXIT', code, sorted(m for m in ('tensorflow', 'keras', 'keras_lopt') if m in sys.modules))\n"
    )
    result = _python(code)
    assert "EXIT 0 []" in result.stdout or "EXIT 2 []" in result.stdout, result.stdout + result.stderr


def test_version_is_the_package_version():
    from keras_lopt.version import __version__

    result = _python("import keras_lopt_cli; keras_lopt_cli.main(['--version'])")
    assert result.stdout.strip() == f"keras-lopt {__version__}", result.stdout + result.stderr


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from _subparsers(sub)


def test_every_help_shows_the_defaults():
    parser = keras_lopt_cli.build_parser()
    checked = 0
    for name, sub in _subparsers(parser):
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
                continue
            assert f"(default: {action.default})" in text, (name, action.dest)
            checked += 1
    assert checked >= 14  # every default-bearing option of every command


def test_import_keeps_tensorflow_informational_lines_out_unless_asked():
    quiet = _python("import keras_lopt", TF_CPP_MIN_LOG_LEVEL=None)
    assert quiet.returncode == 0, quiet.stderr
    assert "cpu_feature_guard" not in quiet.stderr
    chosen = _python("import os, keras_lopt; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])", TF_CPP_MIN_LOG_LEVEL="0")
    assert chosen.stdout.strip() == "0"  # the user's level is kept


def test_presets_command_prints_the_registry_table():
    result = _python("import keras_lopt_cli; keras_lopt_cli.main(['presets'])")
    assert result.returncode == 0, result.stderr
    from keras_lopt import presets

    assert presets.markdown_table() in result.stdout
