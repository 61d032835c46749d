"""The Vanishing Depth Analyzer driven in a real browser: Debian's Chromium through its ChromeDriver (Selenium), against
the app served on a free localhost port. Nothing is downloaded at test time; without a browser, a driver or Selenium
the test is skipped with the reason.

Setup (Debian, as root): ``apt-get install -y chromium chromium-driver`` and ``pip install -e ".[test,app]"``; then
``pytest -q tests/test_app_browser.py``. ``VANISHING_DEPTH_CHROMIUM`` / ``VANISHING_DEPTH_CHROMEDRIVER`` point at
other binaries.

Run as a script, it takes the README's screenshot of a given model::

    python tests/test_app_browser.py --model outputs/vanishing-depth-demo/pretraining --out docs/app_screenshot.png
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import hub_offline, tiny_config
from vanishing_depth import VanishingDepthForPretraining
from vanishing_depth.image_processing_vanishing_depth import VanishingDepthImageProcessor

# Gradio (the `app` extra) and Selenium are imported where they are used, so that without them the test is skipped
# with the reason instead of failing at collection.
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1700",
)
PAGE_TIMEOUT_S = 40


@pytest.fixture(scope="module", autouse=True)
def _no_network():
    with hub_offline():
        yield


def browser_binaries() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) paths, or None where one is missing."""
    chromium = (
        os.environ.get("VANISHING_DEPTH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    driver = os.environ.get("VANISHING_DEPTH_CHROMEDRIVER") or shutil.which("chromedriver")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_app(model_dir, temp_dir):
    """The app of `model_dir` on a free 127.0.0.1 port, in this process (Gradio's own server thread); yields its URL."""
    from vanishing_depth.app import DepthAnalyzer, build_app

    demo = build_app(DepthAnalyzer(model_dir, device="cpu"), temp_dir)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextlib.contextmanager
def chromium_driver(chromium: str, chromedriver: str, profile_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def run_bundled_frame(driver, url: str, density_percent: str = "1") -> str:
    """Load the page, pick the first bundled frame, set the density, run and wait for the completed depth and the
    metrics. Returns the metrics text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, PAGE_TIMEOUT_S)
    driver.get(url)
    wait.until(lambda d: d.find_elements(By.ID, "frame-0"))
    driver.find_element(By.ID, "frame-0").click()
    wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#rgb img") and "depth_mm" in d.find_element(By.ID, "depth").text
    )
    density = driver.find_element(By.CSS_SELECTOR, "#density input[type='number']")
    density.send_keys(Keys.CONTROL, "a")
    density.send_keys(density_percent)
    density.send_keys(Keys.TAB)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#density input[type='range']").get_attribute("value") == "1")
    driver.find_element(By.ID, "run").click()
    wait.until(
        lambda d: (
            "RMSE" in d.find_element(By.ID, "metrics").text
            and d.find_elements(By.CSS_SELECTOR, "#completed img")
            and d.find_elements(By.CSS_SELECTOR, "#error img")
        )
    )
    return driver.find_element(By.ID, "metrics").text


def metric_rows(text: str) -> dict[str, list[float]]:
    """``{"observed" | "removed" | "all": [rmse_m, mae_m, pixels]}`` from the metrics table as the page shows it."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\s*(observed|removed|all)\s+(\S+)\s+(\S+)\s+(\d+)\s*$", line)
        if match:
            rows[match.group(1)] = [float(match.group(2)), float(match.group(3)), float(match.group(4))]
    return rows


def _require_browser():
    pytest.importorskip("gradio", reason="the app needs the `app` extra: pip install -e '.[app]'")
    pytest.importorskip("selenium", reason="the browser test drives Chromium with Selenium: pip install selenium")
    chromium, driver = browser_binaries()
    if chromium is None or driver is None:
        pytest.skip(
            "no Chromium or ChromeDriver on PATH (Debian: apt-get install -y chromium chromium-driver); "
            f"found chromium={chromium}, chromedriver={driver}"
        )
    return chromium, driver


def test_bundled_frame_at_one_percent_in_chromium(tmp_path):
    chromium, chromedriver = _require_browser()
    model_dir = tmp_path / "tiny" / "pretraining"
    torch.manual_seed(0)
    model = VanishingDepthForPretraining(tiny_config())
    model.save_pretrained(model_dir)
    VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": 56}).save_pretrained(model_dir)

    with (
        served_app(model_dir, tmp_path / "app") as url,
        chromium_driver(chromium, chromedriver, tmp_path / "profile") as driver,
    ):
        text = run_bundled_frame(driver, url, "1")
        driver.save_screenshot(str(tmp_path / "app.png"))
    assert "fraction:0.01" in text  # the page ran at 1 %
    rows = metric_rows(text)
    assert sorted(rows) == ["all", "observed", "removed"], text
    for region, (rmse_m, mae_m, pixels) in rows.items():
        assert math.isfinite(rmse_m) and math.isfinite(mae_m) and 0.0 <= mae_m <= rmse_m, (region, text)
        assert pixels > 0
    assert rows["observed"][2] + rows["removed"][2] == rows["all"][2]
    assert 0.005 < rows["observed"][2] / rows["all"][2] < 0.015
    assert (tmp_path / "app.png").stat().st_size > 10_000


def _screenshot(model: str, out: Path, height_px: int = 1150, width_px: int = 1000, max_bytes: int = 150_000) -> None:
    """The README's picture: the page after the 1 % run on the first bundled frame, cropped, scaled and quantised."""
    from PIL import Image

    chromium, chromedriver = browser_binaries()
    if chromium is None or chromedriver is None:
        sys.exit("needs chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    with tempfile.TemporaryDirectory() as folder:
        with (
            served_app(model, Path(folder) / "app") as url,
            chromium_driver(chromium, chromedriver, Path(folder) / "profile") as driver,
        ):
            print(run_bundled_frame(driver, url, "1"))
            driver.save_screenshot(str(Path(folder) / "page.png"))
        page = Image.open(Path(folder) / "page.png").convert("RGB")
    page = page.crop((0, 0, page.width, min(page.height, round(height_px * page.width / width_px))))
    page = page.resize((width_px, round(page.height * width_px / page.width)), Image.LANCZOS)
    page.save(out, optimize=True)
    if out.stat().st_size > max_bytes:  # 256 colours, dithered, still reads well and stays small
        page.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(
            out, optimize=True
        )
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Take the README's screenshot of the app in Chromium.")
    parser.add_argument("--model", required=True, help="A completion model folder (e.g. the demo's pretraining).")
    parser.add_argument("--out", type=Path, default=Path("docs/app_screenshot.png"))
    arguments = parser.parse_args()
    _screenshot(arguments.model, arguments.out)
