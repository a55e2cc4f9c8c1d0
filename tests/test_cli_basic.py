import subprocess
import sys

from skelcl.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "datasets" in out and "inspect" in out


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "skelcl", "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "skelcl" in r.stdout
