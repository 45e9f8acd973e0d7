"""Test reports of a real build (Docker backend, busybox): a job's JUnit file is collected from its
container and stored with the build's secrets masked, whatever XML spelling hid them."""

from __future__ import annotations

import pytest

from runner.store import reports as rq

pytestmark = pytest.mark.docker

SECRET = "hunter2-Sq9"
PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: test
    jobs:
      - name: unit
        steps: ["mkdir -p reports && cp fixtures/unit.xml reports/unit.xml && exit 1"]
        reports: {junit: ["reports/*.xml"]}
"""
# The secret as character references, split across CDATA sections, split by a comment, and in a
# test's name: each is the secret again once XML is decoded, which is how the page shows it.
REPORT = """<testsuites><testsuite name="unit">
<testcase classname="app" name="test_&#104;unter2-Sq9"><failure message="token &#x68;unter2-Sq9 refused">
got <![CDATA[hunter]]><![CDATA[2-Sq9]]></failure>
<system-out>password: hun<!-- -->ter2-Sq9</system-out></testcase>
<testcase classname="app" name="test_ok"/>
</testsuite></testsuites>
"""


async def test_secrets_are_masked_in_the_stored_report_however_the_xml_spells_them(builds):
    b = await builds(PIPELINE, {"fixtures/unit.xml": REPORT})
    build = await b.run(secrets={"API_TOKEN": SECRET})
    assert build.status == "failure"
    totals = await b.store.aread(lambda c: rq.build_totals(c, build.id))
    assert (totals.tests, totals.failed, totals.passed) == (2, 1, 1)
    [failed, _] = await b.store.aread(lambda c: rq.list_cases(c, build.id))
    shown = " ".join(str(v) for v in failed.to_json().values())
    assert "hunter" not in shown and "Sq9" not in shown, shown
    assert failed.name == "test_********" and failed.message == "token ******** refused"
    assert failed.detail.strip() == "got ********" and failed.stdout == "password: ********"
