"""The dashboard in a real browser: headless Chromium clicks through every page.

Screenshots of each page go to ``artifacts/screenshots/``. Skips (saying why) when Chromium,
its driver or Selenium is missing; `.ci/run` installs the Debian packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slocast.artifacts import save_bundle
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import load_dataset
from slocast.decisions.autoscaler import HPA, PredictiveAutoscaler
from slocast.models import GBMConfig, QuantileForecaster
from slocast.sim import AutoscaleScenario, simulate_autoscale
from tests.conftest import LLMD, REPO, free_port, wait_for_port

pytestmark = pytest.mark.slow
SCREENSHOTS = REPO / "artifacts" / "screenshots"
TRACE = f"llmd-ttft:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}"


def _browser(scratch: Path) -> object:
    """Headless Chromium whose profile and temporary files stay under ``scratch`` (left to
    itself it leaves a directory in /tmp per run)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={scratch / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    env = {**os.environ, "TMPDIR": str(scratch)}
    service = webdriver.ChromeService(executable_path=driver, env=env)
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    home = tmp_path_factory.mktemp("dash")
    data = load_dataset(TRACE)
    base = QuantileForecaster(data.spec, 0.9, "lightgbm", GBMConfig(n_estimators=60))
    forecaster, _, _ = fit_on_history(data.frame, base, CalibrationParams(), 0.2)
    version = save_bundle(forecaster, home / "ttft", {"dataset": TRACE}, {"train_rows": 1})
    scenario = AutoscaleScenario()
    rates = np.full(600, 40.0)
    results = {
        p.name: simulate_autoscale(rates, p, scenario).summary()
        for p in (HPA(), PredictiveAutoscaler(scenario.service_rate, scenario.slo_s))
    }
    sim = home / "sim.json"
    sim.write_text(json.dumps({"scenario": "autoscale", "trace": "constant", "policies": results}))
    port, trainer_port = free_port(), free_port()
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    trainer = subprocess.Popen(
        [sys.executable, "-m", "slocast", "trainer", "--port", str(trainer_port)],
        env={**os.environ, "SLOCAST_HOME": str(home / "trainer")},
        **quiet,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "slocast", "dashboard", "--bundle", str(home / "ttft"),
         "--trace", TRACE, "--sim-results", str(sim), "--port", str(port),
         "--trainer", f"http://127.0.0.1:{trainer_port}"],
        **quiet,
    )  # fmt: skip
    try:
        wait_for_port(trainer_port, attempts=900)  # slow starts on a loaded CI machine
        wait_for_port(port, attempts=900)
        yield port, version
    finally:
        for child in (process, trainer):
            child.terminate()
            child.wait(timeout=30)


def _wait_for(browser: object, *texts: str, timeout: float = 120.0) -> str:
    """Wait until every text is on the page (Streamlit renders element by element); return
    the page text."""
    from selenium.webdriver.support.ui import WebDriverWait

    def body(b: Any) -> str:
        return str(b.find_element("tag name", "body").text)

    WebDriverWait(browser, timeout).until(lambda b: all(t in body(b) for t in texts))
    return body(browser)


def _click(browser: object, xpath: str) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(expected_conditions.element_to_be_clickable(("xpath", xpath)))
    browser.find_element("xpath", xpath).click()  # type: ignore[attr-defined]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short directory for Chromium, removed after the test: its singleton socket's path must
    fit a UNIX socket name (108 bytes), which pytest's tmp_path under xdist leaves no room for."""
    with tempfile.TemporaryDirectory(prefix="slocast-chromium-") as path:
        yield Path(path)


def test_every_page_renders_real_values(dashboard: tuple[int, str], scratch: Path) -> None:
    port, version = dashboard
    browser = _browser(scratch)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        browser.get(f"http://127.0.0.1:{port}")  # type: ignore[attr-defined]
        body = _wait_for(browser, "first job: upper bound", "tiny-under-alloc", version)
        value = body.split("first job: upper bound")[1].split()[0]
        assert float(value.replace(",", "")) > 0
        browser.save_screenshot(str(SCREENSHOTS / "predict.png"))  # type: ignore[attr-defined]

        _click(browser, "//label[contains(., 'Simulation')]")
        _click(browser, "//button[contains(., 'replay')]")
        body = _wait_for(browser, "replayed 200 jobs")
        coverage = float(body.split("running coverage")[1].split()[0])
        assert 0.0 <= coverage <= 1.0
        browser.save_screenshot(str(SCREENSHOTS / "simulation.png"))  # type: ignore[attr-defined]

        _click(browser, "//label[contains(., 'Models')]")
        # The gating history is read from the running trainer's HTTP API.
        body = _wait_for(browser, "feature importances of", "gating history", version, "lightgbm")
        assert "trainer unreachable" not in body
        browser.save_screenshot(str(SCREENSHOTS / "models.png"))  # type: ignore[attr-defined]

        _click(browser, "//label[contains(., 'Decisions')]")
        _wait_for(browser, "scenario autoscale", "predictive", "slo_attainment_pct")
        browser.save_screenshot(str(SCREENSHOTS / "decisions.png"))  # type: ignore[attr-defined]
    finally:
        browser.quit()  # type: ignore[attr-defined]
    for page in ("predict", "simulation", "models", "decisions"):
        assert (SCREENSHOTS / f"{page}.png").stat().st_size > 10_000
