"""The README's Python examples and CLI examples must stay true: run them."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert blocks, "README has no python examples"
    namespace: dict = {}
    for block in blocks:  # blocks build on each other, like a reader going top to bottom
        exec(compile(block, str(README), "exec"), namespace)


def _write_frame(directory: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(directory / "frame.jpg")
    depth_mm = rng.integers(500, 4000, (120, 160)).astype(np.uint16)
    Image.fromarray(depth_mm).save(directory / "frame_depth.png")


def _cli_lines() -> list[str]:
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("vanishing-depth"):
                lines.append(line)
    return lines


@pytest.mark.parametrize("line", _cli_lines())
def test_readme_cli_examples_run(line, tmp_path):
    _write_frame(tmp_path)
    argv = shlex.split(line)
    command = [sys.executable, "-m", "vanishing_depth.cli", *argv[1:]]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
