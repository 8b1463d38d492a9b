"""The floors hold: tracer and engine never load Textual, tracer never loads engine."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["tracer", "engine"])
def test_core_imports_without_textual(package: str) -> None:
    code = (
        f"import sys, {package}\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'tui')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_tracer_does_not_load_engine() -> None:
    code = "import sys, tracer\nprint(any(m == 'engine' or m.startswith('engine.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_help_does_not_load_textual() -> None:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom tui.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
