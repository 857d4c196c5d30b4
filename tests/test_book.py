"""Checks of the built site; `make test` builds it from a clean _build first."""

import html
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.book
HTML = Path(__file__).resolve().parents[1] / "_build" / "html"


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` (make test does it)")
    return HTML


def page_text(path: Path) -> str:
    """The visible text of a built page (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_welcome_and_setup_pages_are_built(site):
    welcome = page_text(site / "book" / "welcome.html")
    assert "Transformers from Scratch" in welcome
    setup = page_text(site / "book" / "setup.html")
    assert "transformer-course doctor" in setup
    assert "TRANSFORMER_COURSE_DATA" in setup


def test_repository_and_launch_buttons_use_the_configured_url(site):
    import yaml

    config = yaml.safe_load((site.parents[1] / "_config.yml").read_text())
    url = config["repository"]["url"]
    assert url in (site / "book" / "welcome.html").read_text()
