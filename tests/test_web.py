"""The chat page end to end in headless Chromium (Debian's chromium + chromium-driver, driven by
selenium): type a request, see the list with its reasons; steer it; hostile text (in a message
or in an item title) is shown as text, never run as HTML."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from agent.chat import Conversation
from agent.cli.runtime import agent_config, shared_agent_factory
from agent.llm.base import NoLLM
from agent.serve.app import ServerSettings, create_app, running
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("headless Chromium is not installed (apt-get install -y chromium chromium-driver)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-dev-shm-usage", "--window-size=1200,900")  # fmt: skip
HOSTILE_TITLE = "<img src=x onerror=\"document.body.dataset.pwned='title'\">Evil Title"
HOSTILE_MESSAGE = "<img src=x onerror=\"document.body.dataset.pwned='message'\"> no comedy"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _send(driver, text: str, turns_before: int) -> None:
    box = driver.find_element(By.ID, "message")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    # my message and the reply both land in the log, and the page is idle again
    WebDriverWait(driver, 60).until(
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#log .turn")) >= turns_before + 2
            and d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "idle"
        )
    )


def test_chat_page_end_to_end(browser, toolbox: Toolbox) -> None:
    llm = NoLLM()
    factory = shared_agent_factory(llm, toolbox, agent_config(llm, k=5))
    first_pick = Conversation(factory, toolbox).turn("predict", "I like Toy Story and Heat").items[0].id
    index = toolbox.dataset.item_index[first_pick] - 1
    original = toolbox.dataset.items[index]
    toolbox.dataset.items[index] = original.model_copy(update={"title": HOSTILE_TITLE})
    try:
        with running(create_app(ServerSettings(), factory)) as base_url:
            browser.get(base_url + "/")
            assert browser.title == "toolrec chat"

            _send(browser, "I like Toy Story and Heat", 0)
            rows = browser.find_elements(By.CSS_SELECTOR, "#results li")
            assert len(rows) == 5
            assert all("via " in row.find_element(By.CLASS_NAME, "reason").text for row in rows)
            # the hostile title is on the list as text: no element was made from it, nothing ran
            assert rows[0].find_element(By.CLASS_NAME, "title").text == HOSTILE_TITLE
            first = [row.get_attribute("data-id") for row in rows]

            _send(browser, HOSTILE_MESSAGE, 2)
            log = browser.find_element(By.ID, "log")
            assert HOSTILE_MESSAGE in log.text
            rows = browser.find_elements(By.CSS_SELECTOR, "#results li")
            assert len(rows) == 5 and not set(first) & {row.get_attribute("data-id") for row in rows}
            assert all("Comedy" not in row.find_element(By.CLASS_NAME, "meta").text for row in rows)
            assert "no Comedy" in browser.find_element(By.ID, "constraints").text

            assert browser.find_elements(By.CSS_SELECTOR, "#log img, #results img") == []
            assert browser.execute_script("return document.body.dataset.pwned || null") is None
    finally:
        toolbox.dataset.items[index] = original
