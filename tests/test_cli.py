"""The command line itself: help and version without heavy imports, every command's parser, shell completion."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from twingan.cli.main import COMMANDS, build_parser, command_of, main

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "cv2", "PIL", "gradio", "omegaconf", "faiss", "safetensors")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []])
def test_help_and_version_import_nothing_heavy(argv):
    code = (
        "import sys\nfrom twingan.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command_with_its_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, line in COMMANDS.items():
        assert f"{name} {' '.join(line.split())}" in text


def test_every_command_registers_its_own_parser(capsys):
    full = build_parser(full=True)
    commands = full._subparsers._group_actions[0].choices
    assert list(commands) == list(COMMANDS)
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: twingan {name}" in capsys.readouterr().out


def test_the_command_is_the_first_argument_that_is_not_an_option(capsys):
    assert command_of(["translate", "ckpt", "--to", "anime"]) == "translate"
    assert command_of(["--version"]) is None
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def complete(script: Path, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end) with the completion script loaded."""
    program = (
        f"source {script}\n"
        'read -ra COMP_WORDS <<< "$LINE"; [[ "$LINE" == *" " ]] && COMP_WORDS+=("")\n'
        'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="$LINE"; COMP_POINT=${#LINE}\n'
        'fn=$(complete -p twingan | sed -E "s/.* -F ([^ ]+) .*/\\1/")\n'
        '"$fn" twingan "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", program], env={"LINE": line, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_bash_completion_of_commands_options_and_choices(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "twingan.bash"
    script.write_text(capsys.readouterr().out)
    assert complete(script, "twingan tr") == ["train", "translate"]
    assert complete(script, "twingan translate --pa") == ["--paste-back"]
    assert complete(script, "twingan export model.safetensors --format ") == ["pt2", "onnx", "release"]
    assert complete(script, "twingan index q") == ["query"]


@pytest.mark.parametrize("shell", ["zsh", "tcsh"])
def test_other_shells_get_a_script_naming_every_command(shell, capsys):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert all(name in script for name in COMMANDS)
