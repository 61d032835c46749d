"""The README's Python examples and CLI examples must stay true: run them.

```python blocks run top to bottom in one namespace; ```bash lines that call `vanishing-depth` run in order in one
folder that holds the files they name (frame.jpg, frame_depth.png, rgb/ and depth/ folders). ```console blocks are
the commands that need the Hub or a GPU cluster and are not run here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _write_frames(directory: Path) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:160]
    for index in range(3):
        rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        depth_mm = (800 + 20 * xx + 5 * yy + 100 * index).astype(np.uint16)
        depth_mm[rng.random((120, 160)) < 0.1] = 0
        (directory / "rgb").mkdir(exist_ok=True)
        (directory / "depth").mkdir(exist_ok=True)
        Image.fromarray(rgb).save(directory / "rgb" / f"{index:05d}.jpg")
        Image.fromarray(depth_mm).save(directory / "depth" / f"{index:05d}.png")
        if index == 0:
            Image.fromarray(rgb).save(directory / "frame.jpg")
            Image.fromarray(depth_mm).save(directory / "frame_depth.png")


def _cli_lines() -> list[str]:
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("vanishing-depth"):
                lines.append(line)
    return lines


def test_readme_cli_examples_run(tmp_path):
    lines = _cli_lines()
    assert any("features" in line for line in lines) and any("pretrain" in line for line in lines)
    _write_frames(tmp_path)
    for line in lines:
        argv = shlex.split(line)
        command = [sys.executable, "-m", "vanishing_depth.cli", *argv[1:]]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def test_examples_run(tmp_path):
    examples = sorted((README.parent / "examples").glob("*.py"))
    assert examples
    for script in examples:
        result = subprocess.run(
            [sys.executable, str(script), "--out", str(tmp_path / "picture.png")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{script.name}\n{result.stderr[-3000:]}"
