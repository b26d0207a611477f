"""banner.js end to end in headless Chromium: a live service, and the example page served
from another origin that the property allows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.cache import cache

from consent import services
from consent.banner import services as banner_services
from consent.models import ConsentEvent, ConsentState, Purpose, Subject, SubjectLink
from governance.actors import Actor
from tests import factories
from tests.consent.browser import chromium, screenshot, static_site, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SHOWN = ["analytics", "ml_training", "targeted_ads", "service"]
ASKED = ["analytics", "ml_training", "targeted_ads"]


@pytest.fixture
def site() -> Iterator[str]:
    with static_site() as origin:
        yield origin


@pytest.fixture
def page(live_server: Any, site: str) -> str:
    cache.clear()
    seeded = factories.seed_purposes()
    _, key = banner_services.property_create(
        name="example shop",
        allowed_origins=[site],
        purposes=[seeded[k] for k in SHOWN],
        actor=Actor.system("test"),
        texts={"en": {"title": "Your privacy choices"}},
    )
    return f"{site}/banner.html?" + urlencode({"api": live_server.url, "key": key})


def banner(driver: Any) -> Any:
    return driver.find_element("id", "cg-banner")


def ready(driver: Any) -> None:
    wait_for(
        lambda: driver.execute_script(
            "return document.documentElement.getAttribute('data-cg-ready')"
            " || document.documentElement.getAttribute('data-cg-error')"
        ),
        what="banner.js to load its config",
    )
    error = driver.execute_script("return document.documentElement.getAttribute('data-cg-error')")
    assert not error, error


def click(driver: Any, action: str) -> None:
    before = driver.execute_script("return document.documentElement.getAttribute('data-cg-saved')")
    driver.find_element("css selector", f'#cg-banner [data-cg-action="{action}"]').click()
    if action in ("accept-all", "reject-all", "save"):
        wait_for(
            lambda: (
                driver.execute_script(
                    "return document.documentElement.getAttribute('data-cg-saved')"
                )
                != before
            ),
            what=f"{action} to be recorded",
        )


def device_states() -> dict[str, tuple[str, str]]:
    subject = Subject.objects.get(namespace="device")
    return {
        s.purpose.key: (s.status, ConsentEvent.objects.get(id=s.event_id).source)
        for s in ConsentState.objects.filter(subject=subject).select_related("purpose")
    }


def test_banner_appears_and_reject_all_records_refusals(page):
    with chromium() as driver:
        driver.get(page)
        ready(driver)
        assert banner(driver).is_displayed()
        assert banner(driver).get_attribute("role") == "dialog"
        buttons = {
            b.get_attribute("data-cg-action"): b
            for b in driver.find_elements("css selector", "#cg-banner button")
        }
        # Accept all and reject all: equally prominent (same size, same style).
        accept, reject = buttons["accept-all"], buttons["reject-all"]
        assert accept.size == reject.size
        assert accept.value_of_css_property("background-color") == reject.value_of_css_property(
            "background-color"
        )
        screenshot(driver, "banner-first-visit")
        click(driver, "reject-all")
        assert not banner(driver).is_displayed()
        assert device_states() == {k: ("refused", "banner") for k in ASKED}
        device_id = driver.execute_script(
            "return localStorage.getItem('consentgovernance.device_id')"
        )
        assert device_id and device_id.startswith("dev_")
        assert Subject.objects.get(namespace="device").key != device_id


def test_customise_and_save_records_exactly_the_toggled_purposes(page):
    from selenium.webdriver.common.keys import Keys

    with chromium() as driver:
        driver.get(page)
        ready(driver)
        click(driver, "customise")
        boxes = driver.find_elements("css selector", "#cg-banner input[data-cg-purpose]")
        assert sorted(b.get_attribute("name") for b in boxes) == sorted(ASKED)
        assert not any(b.is_selected() for b in boxes), "no purpose may be pre-ticked"
        for box in boxes:
            label = driver.find_element("css selector", f'label[for="{box.get_attribute("id")}"]')
            assert label.text
        # Keyboard: tick ml_training with the space bar.
        driver.find_element("id", "cg-purpose-ml_training").send_keys(Keys.SPACE)
        screenshot(driver, "banner-customise")
        click(driver, "save")
        assert device_states() == {
            "analytics": ("refused", "banner"),
            "ml_training": ("granted", "banner"),
            "targeted_ads": ("refused", "banner"),
        }
        assert set(ConsentEvent.objects.values_list("indication_method", flat=True)) == {"checkbox"}


def test_reload_does_not_ask_again_and_a_material_change_does(page):
    with chromium() as driver:
        driver.get(page)
        ready(driver)
        click(driver, "accept-all")
        assert {k: v[0] for k, v in device_states().items()} == dict.fromkeys(ASKED, "granted")
        driver.refresh()
        ready(driver)
        assert not banner(driver).is_displayed()
        assert driver.find_element("id", "cg-reopen").is_displayed()
        screenshot(driver, "banner-after-reload")
        services.notice_version_publish(
            purpose=Purpose.objects.get(key="analytics"),
            texts={"en": ("Analytics", "We now also share visit counts with partners.")},
            material=True,
        )
        driver.refresh()
        ready(driver)
        assert banner(driver).is_displayed()
        screenshot(driver, "banner-material-change")


def test_withdrawal_takes_one_click_like_granting(page):
    with chromium() as driver:
        driver.get(page)
        ready(driver)
        click(driver, "accept-all")
        driver.find_element("id", "cg-reopen").click()
        assert banner(driver).is_displayed()
        ticked = driver.find_element("id", "cg-purpose-analytics")
        assert ticked.is_selected()  # reopening shows the standing choice
        click(driver, "reject-all")
        assert {k: v[0] for k, v in device_states().items()} == dict.fromkeys(ASKED, "withdrawn")


def test_a_browser_sending_gpc_gets_the_opt_outs(page):
    with chromium(gpc=True) as driver:
        driver.get(page)
        ready(driver)
        # Recorded on load, without asking: GPC asks for nothing more.
        assert device_states() == {"targeted_ads": ("refused", "gpc")}
        click(driver, "customise")
        assert not driver.find_element("id", "cg-purpose-targeted_ads").is_enabled()
        screenshot(driver, "banner-gpc")
        click(driver, "accept-all")
        states = device_states()
        assert states["targeted_ads"] == ("refused", "gpc")
        assert states["analytics"] == ("granted", "banner")


def test_vanilla_cookieconsent_example_records_through_its_callbacks(page, site):
    vcc_page = page.replace(f"{site}/banner.html", f"{site}/vanilla-cookieconsent.html")
    with chromium() as driver:
        driver.get(vcc_page)
        ready(driver)
        modal = wait_for(
            lambda: next(
                (
                    m
                    for m in driver.find_elements("css selector", "#cc-main .cm")
                    if m.is_displayed()
                ),
                None,
            ),
            what="the vanilla-cookieconsent modal",
        )
        screenshot(driver, "vanilla-cookieconsent")
        before = driver.execute_script(
            "return document.documentElement.getAttribute('data-cg-saved')"
        )
        modal.find_element("css selector", '[data-role="necessary"]').click()
        wait_for(
            lambda: (
                driver.execute_script(
                    "return document.documentElement.getAttribute('data-cg-saved')"
                )
                != before
            ),
            what="the choice to be recorded",
        )
        assert device_states() == {k: ("refused", "banner") for k in ASKED}
        driver.refresh()
        ready(driver)
        assert not [
            m for m in driver.find_elements("css selector", "#cc-main .cm") if m.is_displayed()
        ]


def test_a_device_id_the_service_did_not_issue_is_replaced(page):
    with chromium() as driver:
        driver.get(page)
        ready(driver)
        driver.execute_script("localStorage.setItem('consentgovernance.device_id', 'dev_forged')")
        driver.refresh()
        ready(driver)
        assert banner(driver).is_displayed()
        stored = driver.execute_script("return localStorage.getItem('consentgovernance.device_id')")
        assert stored.startswith("dev_") and stored != "dev_forged"


def test_keyboard_alone_can_reject_all(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    with chromium() as driver:
        driver.get(page)
        ready(driver)
        focused = driver.switch_to.active_element
        assert focused.get_attribute("id") == "cg-title"  # focus moved into the dialog
        ActionChains(driver).send_keys(Keys.TAB).perform()
        assert driver.switch_to.active_element.get_attribute("data-cg-action") == "reject-all"
        before = driver.execute_script(
            "return document.documentElement.getAttribute('data-cg-saved')"
        )
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        wait_for(
            lambda: (
                driver.execute_script(
                    "return document.documentElement.getAttribute('data-cg-saved')"
                )
                != before
            ),
            what="the keyboard choice to be recorded",
        )
        assert device_states() == {k: ("refused", "banner") for k in ASKED}
        assert driver.switch_to.active_element.get_attribute("id") == "cg-reopen"


def test_logging_in_carries_the_device_choice_to_the_account(page):
    from consent.subject_tokens import subject_token_mint

    with chromium() as driver:
        driver.get(page)
        ready(driver)
        click(driver, "accept-all")
        token, _ = subject_token_mint(subject_id="customer-1001")
        driver.get(page + "&" + urlencode({"token": token}))
        ready(driver)
        assert not banner(driver).is_displayed()  # the account now holds the device's choice
        account = Subject.objects.get(namespace="account")
        assert {
            s.purpose.key: s.status
            for s in ConsentState.objects.filter(subject=account).select_related("purpose")
        } == dict.fromkeys(ASKED, "granted")
        assert SubjectLink.objects.filter(account_subject=account).exists()


def test_a_missing_browser_fails_loudly_instead_of_skipping(monkeypatch):
    from tests.consent import browser

    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="make browser"):
        browser.require_chromium()
