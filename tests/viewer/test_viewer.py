"""viewer.html in a real browser (headless Chromium through selenium): choose a segment, layer and head,
hover tokens and cells, and read back the numbers of the shards; no console error, no network request.

The page stores maps as float16: a value read back differs from a float32 shard by at most 2^-12
(half a float16 step in [0.5, 1)) and equals a float16 shard exactly.
"""

from __future__ import annotations

import pytest

from bertstory.viewer import build
from bertstory.viewer.encode import MAX_ERROR
from tests.conftest import shard_maps
from tests.viewer.browser import MISSING, console_errors, open_browser, requested_urls
from tests.viewer.test_payload import js_bits, page_data

pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]
TOL = MAX_ERROR["float16"]


@pytest.fixture(scope="module")
def browser():
    driver = open_browser()
    yield driver
    driver.quit()


def by_css(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def choose(driver, select_id: str, value) -> None:
    from selenium.webdriver.support.ui import Select

    Select(by_css(driver, f"#{select_id}")).select_by_value(str(value))


def hover(driver, element, dx: float | None = None, dy: float | None = None, click: bool = False) -> None:
    """Move the mouse onto ``element`` (at offset dx, dy from its top-left corner when given), maybe click."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    if dx is None:
        chain.move_to_element(element)
    else:  # selenium's offsets count from the element's centre
        chain.move_to_element_with_offset(element, int(dx - element.size["width"] / 2),
                                          int(dy - element.size["height"] / 2))
    if click:
        chain.click()
    chain.perform()


def row_values(driver, cls: str) -> list[float]:
    """The values of one column of the hovered token's table (``att-row``, ``attr-col``...) by key j."""
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, f"#token-values td.{cls}")
    return [float(c.get_attribute("data-v")) for c in cells]


def open_page(driver, path) -> None:
    driver.get(path.resolve().as_uri())
    driver.get_log("browser")  # a fresh log per page
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())


def assert_clean(driver, path) -> None:
    assert console_errors(driver) == []
    urls = requested_urls(driver)
    assert urls and set(urls) <= {path.resolve().as_uri()}, urls  # the page itself, nothing else


def test_token_hover_shows_the_shards_numbers(browser, viewer_runs):
    run_dir = viewer_runs("exact")
    page = run_dir / "viewer.html"
    (run,) = page_data(page)["runs"]
    shards = shard_maps(run_dir)
    open_page(browser, page)
    position, layer, head, i = 3, 1, 2, 4
    choose(browser, "segment", position)
    choose(browser, "layer", layer)
    choose(browser, "head", head)
    k = run["segments"][position]["index"]
    A = shards[k]["attention"][layer, head].double()
    a = shards[k]["attribution"][layer, head].double()
    n = A.shape[0]
    token = by_css(browser, f'#panel-attention .rowlabels .tok[data-i="{i}"]')
    assert token.text == run["segments"][position]["tokens"][i]
    hover(browser, token)
    assert "hl" in token.get_attribute("class")
    assert "hl" in by_css(browser, f'#panel-attribution .collabels .tok[data-i="{i}"]').get_attribute("class")
    for cls, ref in (("att-row", A[i]), ("attr-row", a[i]), ("att-col", A[:, i]), ("attr-col", a[:, i]),
                     ("diff-row", a[i] - A[i])):
        got = row_values(browser, cls)
        assert len(got) == n
        bound = 2 * TOL if cls == "diff-row" else TOL
        assert max(abs(g - r) for g, r in zip(got, ref.tolist(), strict=True)) <= bound, cls
    shown = by_css(browser, "#token-values td.attr-row").text  # what a reader sees: 4 significant digits
    assert float(shown) == pytest.approx(a[i, 0].item(), rel=1e-3, abs=TOL)

    # hover one cell (query i, key j) of the attribution heatmap
    j = 2
    overlay = by_css(browser, "#panel-attribution canvas.overlay")
    px = overlay.size["width"] / n
    hover(browser, overlay, (j + 0.5) * px, (i + 0.5) * px)
    assert float(by_css(browser, "#hv-att").get_attribute("data-v")) == pytest.approx(A[i, j].item(), abs=TOL)
    assert float(by_css(browser, "#hv-attr").get_attribute("data-v")) == pytest.approx(a[i, j].item(), abs=TOL)

    # the head's statistics for the segment and for the corpus
    stats = by_css(browser, '#head-stats tr[data-stat="discrepancy/js"]')
    seg_js = float(stats.find_element("css selector", "td.seg").get_attribute("data-v"))
    ref_js = sum(js_bits(A[q].tolist(), a[q].tolist()) for q in range(n)) / n
    assert seg_js == pytest.approx(ref_js, rel=1e-5, abs=1e-12)
    corpus_js = float(stats.find_element("css selector", "td.corpus").get_attribute("data-v"))
    assert corpus_js == pytest.approx(run["corpus"]["discrepancy/js"][layer][head], rel=1e-12)
    assert_clean(browser, page)


def test_difference_lines_small_multiples_and_corpus_jump(browser, viewer_runs):
    run_dir = viewer_runs("exact")
    page = run_dir / "viewer.html"
    (run,) = page_data(page)["runs"]
    shards = shard_maps(run_dir)
    open_page(browser, page)
    by_css(browser, "#diff").click()
    assert by_css(browser, "#panel-difference").is_displayed()
    k = run["segments"][0]["index"]
    A, a = shards[k]["attention"][0, 0].double(), shards[k]["attribution"][0, 0].double()
    n = A.shape[0]
    overlay = by_css(browser, "#panel-difference canvas.overlay")
    px = overlay.size["width"] / n
    hover(browser, overlay, 1.5 * px, 3.5 * px)  # query 3, key 1
    assert float(by_css(browser, "#hv-diff").get_attribute("data-v")) == pytest.approx((a[3, 1] - A[3, 1]).item(),
                                                                                       abs=2 * TOL)
    # bertviz-style lines: one canvas per view, the hovered token's row still read back
    choose(browser, "view", "lines")
    for name in ("attention", "attribution", "difference"):
        assert by_css(browser, f"#lines-{name}").is_displayed()
    hover(browser, by_css(browser, '#panel-attention .lines .left .tok[data-i="1"]'))
    assert row_values(browser, "att-row") == pytest.approx(A[1].tolist(), abs=TOL)
    # all heads of a layer as small multiples; a click opens that head
    choose(browser, "head", "all")
    minis = browser.find_elements("css selector", "#multiples .mini")
    assert len(minis) == run["heads"]
    minis[1].click()
    assert by_css(browser, "#head").get_attribute("value") == "1"
    # the heads x layers map of the corpus statistics jumps to the clicked head
    choose(browser, "corpus-metric", "attention/patterns/sep")
    canvas = by_css(browser, "#corpus-map")
    left, top, cell = 26, 16, 34  # the layout drawn by viewer.js renderCorpus
    hover(browser, canvas, left + 3.5 * cell, top + 1.5 * cell, click=True)
    assert by_css(browser, "#layer").get_attribute("value") == "1"
    assert by_css(browser, "#head").get_attribute("value") == "3"
    value = run["corpus"]["attention/patterns/sep"][1][3]
    assert by_css(browser, "#corpus-info").text.endswith(f"layer 1, head 3: attention/patterns/sep = {value:.4g}")
    assert_clean(browser, page)


def test_attention_only_run_works(browser, viewer_runs):
    run_dir = viewer_runs("none")
    page = run_dir / "viewer.html"
    shards = shard_maps(run_dir)
    open_page(browser, page)
    assert not by_css(browser, "#panel-attribution").is_displayed()
    assert "attribution=none" in by_css(browser, "#note").text
    choose(browser, "segment", 1)
    choose(browser, "layer", 1)
    choose(browser, "head", 3)
    hover(browser, by_css(browser, '#panel-attention .rowlabels .tok[data-i="2"]'))
    ref = shards[1]["attention"][1, 3, 2].float().tolist()
    assert row_values(browser, "att-row") == ref  # float16 shards: exactly
    assert row_values(browser, "attr-row") == []
    assert_clean(browser, page)


def test_switch_between_two_runs_of_the_same_segments(browser, viewer_runs, tmp_path):
    exact, rollout = viewer_runs("exact"), viewer_runs("rollout")
    page = build(exact, compare=rollout, out=tmp_path / "compare.html").path
    open_page(browser, page)
    choose(browser, "layer", 1)
    choose(browser, "head", 0)
    token = '#panel-attention .rowlabels .tok[data-i="1"]'
    for position, run_dir in enumerate((exact, rollout)):
        choose(browser, "run", position)
        hover(browser, by_css(browser, token))
        ref = shard_maps(run_dir)[0]["attribution"][1, 0, 1].tolist()
        assert row_values(browser, "attr-row") == pytest.approx(ref, abs=TOL)
        assert ("rollout" in by_css(browser, "#title").text) == (position == 1)
    assert_clean(browser, page)
