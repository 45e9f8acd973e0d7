"""The JUnit parser over files shaped like what real test runners write (tests/reports/data/), and
over hostile ones: each refused quickly, with a message naming the file, never a host file read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.reports.junit import MAX_OUTPUT, MAX_REPORT_BYTES, ReportError, parse_junit

DATA = Path(__file__).parent / "data"


def parse(name: str):
    return parse_junit(name, (DATA / name).read_bytes())


def by_name(cases):
    return {c.name: c for c in cases}


def test_pytest_report_gives_every_status_with_messages_and_output():
    cases = by_name(parse("pytest.xml"))
    assert [c.status for c in cases.values()] == ["passed", "failed", "error", "skipped", "skipped", "passed"]
    divide = cases["test_divide"]
    assert divide.classname == "tests.test_math" and divide.suite == "pytest" and divide.time == 0.004
    assert divide.message == "assert 0.5 == 2\n +  where 0.5 = divide(1, 2)"
    assert "tests/test_math.py:9: AssertionError" in divide.detail
    assert "dividing 1 by 2" in divide.stdout and divide.stderr == "warning: float division"
    assert cases["test_connect"].message.startswith('failed on setup with "ConnectionRefusedError')
    assert cases["test_overflow"].message == "known overflow, issue 12"  # xfail
    assert "test_unicode_ünïcödé" in cases


def test_old_pytest_root_testsuite_and_a_failure_whose_teardown_broke():
    ok, broken = parse("pytest_legacy.xml")
    assert ok.status == "passed"
    assert broken.status == "error" and broken.message == "AssertionError: wrong"
    assert "assert False" in broken.detail and "RuntimeError: teardown broke" in broken.detail


def test_surefire_report_with_thousands_separator_flaky_and_rerun_failures():
    cases = by_name(parse("surefire.xml"))
    assert cases["dividesByZero"].status == "failed"
    assert cases["dividesByZero"].message == "expected: <Infinity> but was: <NaN>"
    assert "CalculatorTest.java:21" in cases["dividesByZero"].detail
    assert cases["dividesByZero"].stdout == "computing 1/0\n"
    # Failed once, then passed on Surefire's rerun: it passed (its rerun's output is kept).
    assert cases["flakyNetwork"].status == "passed" and cases["flakyNetwork"].stdout == "retrying"
    assert cases["alwaysBroken"].status == "failed" and cases["alwaysBroken"].message == "boom"
    assert cases["notYet"].status == "skipped" and cases["notYet"].message == "@Disabled: not implemented"
    assert cases["addsTwoNumbers"].time == 0.012


def test_go_junit_report_v1_messages_come_from_the_body():
    cases = by_name(parse("go_junit_report_v1.xml"))
    assert len(cases) == 4
    login = cases["TestLogin/wrong_password"]
    assert login.status == "failed" and login.suite == "github.com/acme/web/handlers"
    assert login.message == "login_test.go:42: got status 200, want 401"  # not go-junit-report's "Failed"
    assert cases["TestWebsocket"].status == "skipped"
    assert cases["TestUser"].suite == "github.com/acme/web/models"


def test_go_junit_report_v2_suite_output_goes_to_its_failed_case_and_a_build_failure_is_an_error():
    cases = by_name(parse("go_junit_report_v2.xml"))
    assert cases["TestOrders"].message == "orders_test.go:31: want 3 orders, got 2"
    assert "--- FAIL: TestOrders" in cases["TestOrders"].stdout
    assert cases["TestHealth"].stdout == ""  # a passed case is not given the package's output
    built = cases["[build failed]"]
    assert built.status == "error" and built.message == "Build error" and "undefined: Foo" in built.detail


def test_jest_failure_without_message_attribute():
    cases = by_name(parse("jest.xml"))
    assert cases["cart totals"].message == "Error: expect(received).toBe(expected) // Object.is equality"
    assert "Received: 20" in cases["cart totals"].detail


def test_nested_suites_name_their_cases():
    cases = parse("nested_ant.xml")
    assert [(c.suite, c.name) for c in cases] == [
        ("App\\Tests\\UserTest", "testName"), ("App\\Tests\\UserTest::testEmail", "testEmail with data set #0")]


def test_namespaced_tags_and_junk_times():
    data = (b'<j:testsuites xmlns:j="urn:x"><j:testsuite name="s"><j:testcase name="a" time="N/A"/>'
            b'<j:testcase name="b" time="-1"/><j:testcase name="c" time="2.5s"/></j:testsuite></j:testsuites>')
    assert [(c.name, c.time) for c in parse_junit("ns.xml", data)] == [("a", None), ("b", None), ("c", 2.5)]


def test_huge_output_keeps_its_tail():
    out = "x" * (MAX_OUTPUT * 3) + "THE END"
    data = f"<testsuite><testcase name='t'><failure/><system-out>{out}</system-out></testcase></testsuite>"
    (case,) = parse_junit("big.xml", data.encode())
    assert case.stdout.endswith("THE END") and len(case.stdout) < MAX_OUTPUT + 100
    assert "characters cut" in case.stdout


def refused(data: bytes, name: str = "hostile.xml") -> str:
    start = time.monotonic()
    with pytest.raises(ReportError) as caught:
        parse_junit(name, data)
    # A guard against a hang, not a speed measure (bench/bench_reports.py measures speed): billion
    # laughs expanded would take minutes and gigabytes; refused at its DTD it takes microseconds.
    assert time.monotonic() - start < 60, "a hostile file must be refused, not chewed on"
    assert str(caught.value).startswith(name)
    return str(caught.value)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<testsuite><testcase name="laugh"><failure message="&lol9;">&lol9;</failure></testcase></testsuite>
"""


def test_billion_laughs_is_refused_at_its_dtd():
    assert "declares a DTD" in refused(BILLION_LAUGHS)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://127.0.0.1:1/secret"])
def test_an_external_entity_is_never_fetched(url):
    data = (f'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY xxe SYSTEM "{url}">]>'
            '<testsuite><testcase name="t"><failure message="&xxe;">&xxe;</failure></testcase></testsuite>').encode()
    message = refused(data)
    assert "DTD" in message and "root:" not in message


def test_an_external_dtd_is_refused():
    data = b'<?xml version="1.0"?><!DOCTYPE testsuite SYSTEM "file:///etc/passwd"><testsuite/>'
    assert "DTD" in refused(data)


def test_deep_nesting_is_refused_early():
    data = b"<testsuites>" + b"<testsuite>" * 200_000 + b"</testsuite>" * 200_000 + b"</testsuites>"
    assert "nested more than" in refused(data)


def test_too_many_elements_are_refused():
    data = b"<testsuite><testcase name='t'>" + b"<a/>" * 1_100_000 + b"</testcase></testsuite>"
    assert "more than 1,000,000 XML elements" in refused(data)


def test_a_file_past_the_cap_is_refused_before_parsing():
    message = refused(b"<testsuite>" + b" " * MAX_REPORT_BYTES + b"</testsuite>", "reports/huge.xml")
    assert "MiB cap" in message



def test_a_long_suite_name_repeated_on_every_case_is_refused_not_stored_per_case():
    # 320 KB that would have stored 2 GB: every case carries its suite's name.
    data = f"<testsuite name='{'s' * 100_000}'>{'<testcase/>' * 20_000}</testsuite>".encode()
    assert "more than 4 times the file's size" in refused(data)


def test_names_are_capped():
    data = f"<testsuite name='{'s' * 5000}'><testcase classname='{'c' * 5000}' name='{'n' * 5000}'/></testsuite>"
    (case,) = parse_junit("long.xml", data.encode())
    assert max(len(case.suite), len(case.classname), len(case.name)) < 1100
    assert case.name.startswith("n" * 1000) and "characters cut" in case.name


def test_suite_output_is_shared_with_failed_cases_only_while_the_files_room_lasts():
    out = "o" * MAX_OUTPUT
    data = ("<testsuite name='s'>" + "<testcase name='t'><failure/></testcase>" * 2000
            + f"<system-out>{out}</system-out><system-err>{out}</system-err></testsuite>").encode()
    cases = parse_junit("go.xml", data)
    given = [c for c in cases if c.stdout]
    assert len(cases) == 2000 and 1 <= len(given) < 20  # not 2000 copies of 32 KiB: 64 MB from 113 KB
    assert given == cases[:len(given)] and given[0].stdout == out and given[0].stderr == out
    assert sum(len(c.stdout) + len(c.stderr) for c in cases) <= 4 * len(data)

@pytest.mark.parametrize("data, says", [
    (b"<testsuite><testcase name='a'></testsuite>", "reports/bad.xml:1:33: not well-formed XML (mismatched tag)"),
    (b"<testsuite><testcase name='a'>", "not well-formed XML"),
    (b"", "the file is empty"),
    (b"<html><body>404</body></html>", "the root element is <html>"),
    (b"\x00\xff garbage", "not well-formed XML"),
])
def test_malformed_files_are_a_clear_error_naming_the_file(data, says):
    assert says in refused(data, "reports/bad.xml")


def test_secrets_are_masked_in_reports_as_in_logs_however_xml_spells_them():
    from runner.reports import parse_files

    xml = (b'<testsuite name="s"><testcase classname="c" name="&#104;unter2"><failure message="token s3&amp;cr&lt;t">'
           b'got <![CDATA[hunt]]><![CDATA[er2]]> and hun<!-- a comment -->ter2</failure>'
           b'<system-out>key line1\nline2 ok &#x68;&#x75;nter2</system-out></testcase></testsuite>')
    [report] = parse_files({"r.xml": xml}, ["s3&cr<t", "line1\nline2", "hunter2"])
    [case] = report.cases
    assert report.problem is None
    text = f"{case.name} {case.message} {case.detail} {case.stdout}"
    for leak in ("s3&cr<t", "line1", "line2", "hunter2", "hunt", "ter2"):
        assert leak not in text, (leak, text)
    assert text.count("********") == 6  # the two-line secret is masked whole, once


def test_a_secret_straddling_a_cut_is_masked_before_the_cut():
    from runner.reports import parse_files
    from runner.reports.junit import MAX_OUTPUT

    # The tail of the output is kept: the cut falls in the middle of the secret.
    out = "x" * 100 + "hunter2" + "y" * (MAX_OUTPUT - 3)
    xml = f'<testsuite name="s"><testcase name="t"><system-out>{out}</system-out></testcase></testsuite>'
    [case] = parse_files({"r.xml": xml.encode()}, ["hunter2"])[0].cases
    assert "ter2" not in case.stdout[:60] and case.stdout.endswith("y" * 100)


def test_secrets_are_masked_in_refusals_and_file_names_and_raw_tabs_in_attributes():
    from runner.reports import MAX_FILE_NAME, parse_files

    long = "r/" + "a" * (MAX_FILE_NAME - 7) + "hunter2Sq9.xml"  # the cut falls inside the secret
    tabbed = b'<testsuite name="s"><testcase name="t"><failure message="tok ab\tcd9 x"/></testcase></testsuite>'
    parsed = parse_files({"r.xml": b"<hunter2Sq9/>", long: b"<testsuite/>", "t.xml": tabbed},
                         ["hunter2Sq9", "ab\tcd9"])
    shown = " ".join(f"{p.file} {p.problem} {[c.message for c in p.cases]}" for p in parsed)
    assert "hunter" not in shown and "cd9" not in shown, shown
    refused = next(p for p in parsed if p.file == "r.xml")
    assert "the root element is <********>" in refused.problem
    assert next(p for p in parsed if p.file == "t.xml").cases[0].message == "tok ******** x"


def test_files_that_look_the_same_once_masked_are_both_kept():
    from runner.reports import parse_files

    xml = b'<testsuite name="s"><testcase name="t"/></testsuite>'
    parsed = parse_files({"reports/alpha-tok1.xml": xml, "reports/alpha-tok2.xml": xml}, ["tok1", "tok2"])
    assert [p.file for p in parsed] == ["reports/alpha-********.xml", "reports/alpha-********.xml (2)"]
