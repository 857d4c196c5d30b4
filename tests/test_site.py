"""The built site, as a browser shows it: every chapter page renders, has its figures, shows
no error output, and links to its own notebook in Colab.

Runs Debian's headless Chromium on the pages `make test` has just built, and keeps one
screenshot per part in _build/screenshots/ for a reviewer to look at.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.book
ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium package)")
    pytest.skip("Chromium is not installed (apt-get install chromium)")


def browser_args(profile: Path) -> list[str]:
    return [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=3000",
    ]


def parts() -> list[tuple[str, list[str]]]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [(p["caption"], [c["file"] for c in p["chapters"]]) for p in toc["parts"]]


CHAPTER_PAGES = [f for _, files in parts() for f in files if f.startswith("chapters/")]


@pytest.fixture(scope="module")
def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def rendered(page: str, tmp_path: Path) -> str:
    target = HTML / f"{page}.html"
    assert target.exists(), f"{target} was not built"
    result = subprocess.run(
        [*browser_args(tmp_path / "profile"), "--dump-dom", target.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_chapter_page_renders_with_figures_and_no_errors(page, tmp_path, repository_url):
    dom = rendered(page, tmp_path)
    # "Chapter 7: ..." or "Capstone: ..."
    assert re.search(r"<h1[^>]*>.*?(Chapter|Capstone)", dom, re.S), "no chapter title"
    outputs = re.findall(r'<div class="cell_output docutils container">(.*?)</div>\s*</div>',
                         dom, re.S)
    images = [o for o in outputs if re.search(r"<img [^>]*src=\"[^\"]+\.(png|svg)\"", o)]
    assert images, "no figure among the cell outputs"
    assert "Traceback (most recent call last)" not in dom
    assert 'class="output traceback' not in dom and "output error" not in dom
    notebook = f"{page}.ipynb"
    colab = repository_url.replace("https://github.com/", "https://colab.research.google.com/github/")
    assert f'href="{colab}/blob/main/{notebook}"' in dom, "no Colab launch link to this notebook"


def test_one_screenshot_per_part(tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for number, (caption, files) in enumerate(parts()):
        page = files[0]
        path = SCREENSHOTS / f"{number:02d}-{page.replace('/', '_')}.png"
        subprocess.run(
            [*browser_args(tmp_path / "profile"), "--hide-scrollbars", "--window-size=1280,1600",
             f"--screenshot={path}", (HTML / f"{page}.html").as_uri()],
            capture_output=True, timeout=120, check=True,
        )
        assert path.stat().st_size > 20_000, f"screenshot of {caption} looks empty"
