"""The chat page end to end in headless Chromium (Debian's chromium + chromium-driver, driven by
selenium): type a request and watch the answer stream in (the agent's steps while it works, then
one list with its reasons); steer it; drop a standing preference with a click on its chip and
see the next answer change; hostile text (in a message or in an item title) is shown as text,
never run as HTML."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from agent.chat import Conversation, ConversationConfig
from agent.llm.base import ChatMessage, LLMReply
from agent.llm.scoring import OptionScores
from agent.llm.scripted import ScriptedLLM
from agent.runtime import agent_config, shared_agent_factory
from agent.serve.app import ServerSettings, create_app, running
from agent.serve.progress import STEP_WORDS
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

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
)
HOSTILE_TITLE = "<img src=x onerror=\"document.body.dataset.pwned='title'\">Evil Title"
PAUSE_S = 0.6  # how long the stand-in LLM takes to weigh the menu
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


class SlowScorer:
    """A stand-in LLM that reads every message as nothing new and weighs the menu evenly after a
    pause, so a turn lasts long enough to watch its steps arrive one by one."""

    name = "slow-scripted"

    def chat(self, messages: Sequence[ChatMessage], **_: Any) -> LLMReply:
        return LLMReply(text="{}", prompt_tokens=1, completion_tokens=1, seconds=0.0, model=self.name)

    def score_options(self, messages: Sequence[ChatMessage], options: Sequence[str], **kwargs: Any) -> OptionScores:
        time.sleep(PAUSE_S)
        return ScriptedLLM([], preferences=[[1.0] * len(options)]).score_options(messages, options, **kwargs)


def _answers(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#log .bot")


def _send(driver, text: str) -> list:
    """Send `text`; returns the rows of the answer's list once the page is idle again."""
    before = len(_answers(driver))
    box = driver.find_element(By.ID, "message")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    wait = WebDriverWait(driver, 60, poll_frequency=0.05)
    # while the agent works, its steps show in the new answer: the reply streams
    wait.until(
        lambda d: (
            len(_answers(d)) == before + 1
            and STEP_WORDS["menu"] in _answers(d)[-1].find_element(By.CLASS_NAME, "steps").text
            and d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "waiting"
        )
    )
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "idle")
    return _answers(driver)[-1].find_elements(By.CSS_SELECTOR, ".items li")


def _chips(driver) -> list[str]:
    # read in one script: the bar is rebuilt when the server answers
    return driver.execute_script('return [...document.querySelectorAll("#chips .chip")].map((c) => c.textContent)')


def test_chat_page_end_to_end(browser, toolbox: Toolbox) -> None:
    llm = SlowScorer()
    factory = shared_agent_factory(llm, toolbox, agent_config(llm, k=5, rounds=1))
    first_pick = Conversation(factory, toolbox).turn("predict", "I like Toy Story and Heat").items[0].id
    index = toolbox.dataset.item_index[first_pick] - 1
    original, records = toolbox.dataset.items[index], toolbox.dataset.items._records  # the records the tools show
    records[index] = original.model_copy(update={"title": HOSTILE_TITLE})
    try:
        # the LLM weighs the menu (not the server's default), so that a turn lasts long enough
        # for its steps to be seen arriving
        slow = Conversation(factory, toolbox, config=ConversationConfig(menu_choice="llm"))
        with running(create_app(ServerSettings(), factory, conversation=slow)) as base_url:
            browser.get(base_url + "/")
            assert browser.title == "toolrec chat"

            rows = _send(browser, "I like Toy Story and Heat")
            assert len(rows) == 5
            assert all(row.find_element(By.CLASS_NAME, "reason").text for row in rows)  # each item has its reason
            # the hostile title is on the list as text: no element was made from it, nothing ran
            assert rows[0].find_element(By.CLASS_NAME, "title").text == HOSTILE_TITLE
            first = [row.get_attribute("data-id") for row in rows]
            genres = [g for row in rows for g in row.find_element(By.CLASS_NAME, "meta").text.partition(" - ")[2].split(", ") if g]
            usual = max(sorted(set(genres) - {"Comedy"}), key=genres.count)  # the genre (Comedy aside) their lists are full of
            # one list per answer: the items are on the page once, in the answer
            assert len(browser.find_elements(By.CSS_SELECTOR, "li[data-id]")) == 5

            rows = _send(browser, HOSTILE_MESSAGE)
            log = browser.find_element(By.ID, "log")
            assert HOSTILE_MESSAGE in log.text
            assert len(rows) == 5 and not set(first) & {row.get_attribute("data-id") for row in rows}
            assert all("Comedy" not in row.find_element(By.CLASS_NAME, "meta").text for row in rows)
            assert len(browser.find_elements(By.CSS_SELECTOR, "li[data-id]")) == 10
            assert len(browser.find_elements(By.CSS_SELECTOR, "ol")) == 2
            assert "no Comedy" in _answers(browser)[-1].find_element(By.CLASS_NAME, "text").text  # what was understood
            assert "no Comedy" in _chips(browser)

            rows = _send(browser, f"no {usual.lower()}")
            assert all(usual not in row.find_element(By.CLASS_NAME, "meta").text for row in rows)
            kept = [chip for chip in _chips(browser) if chip != f"no {usual}"]
            assert f"no {usual}" in _chips(browser) and "no Comedy" in kept
            # a click on a chip removes that preference (a typed removal, no message), the rest stay ...
            chip = next(c for c in browser.find_elements(By.CSS_SELECTOR, "#chips .chip") if c.text.startswith(f"no {usual}"))
            chip.click()
            WebDriverWait(browser, 30).until(lambda d: _chips(d) == kept)
            assert f"removed: no {usual}" in log.text and len(browser.find_elements(By.CSS_SELECTOR, "#log .me")) == 3
            # ... and the next answer is made under the preferences kept, free of the removed one
            # (whether its genre comes back on five items depends on the trained backbones)
            rows = _send(browser, "show me more")
            assert _chips(browser) == kept  # the preferences this answer was made under, from its done event
            assert all("Comedy" not in row.find_element(By.CLASS_NAME, "meta").text for row in rows)
            assert len(browser.find_elements(By.CSS_SELECTOR, "ol")) == 4

            assert browser.find_elements(By.CSS_SELECTOR, "#log img") == []
            assert browser.execute_script("return document.body.dataset.pwned || null") is None
    finally:
        records[index] = original
