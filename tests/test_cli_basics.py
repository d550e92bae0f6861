"""The CLI's own contract: version, help, usage errors as one line with exit 2."""
from conftest import assert_one_line_error, run_cli

import mamakit


def test_cli_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"mamakit {mamakit.__version__}"


def test_cli_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "COMMAND" in proc.stdout


def test_cli_unknown_command_is_one_line_usage_error():
    assert_one_line_error(run_cli("no-such-command"), 2, "invalid choice")


def test_cli_unknown_option_is_one_line_usage_error():
    assert_one_line_error(run_cli("--no-such-option"), 2, "unrecognized")


def test_cli_help_without_torch(no_torch_path):
    proc = run_cli("--help", block_torch=no_torch_path)
    assert proc.returncode == 0, proc.stderr
