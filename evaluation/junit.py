"""`ValidationResult` as JUnit XML, the test-report format CI systems display: one test suite
`synth-validate`, one test case per check, a failure carrying the check's reason."""

from __future__ import annotations

import io
import os
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, TestCase, TestSuite

from evaluation.validate import ValidationResult
from synth.atomic import atomic_write_bytes

SUITE = "synth-validate"


def to_junit(result: ValidationResult) -> JUnitXml:
    """The result as a JUnit document (passing checks keep their reason as system-out)."""
    suite = TestSuite(SUITE)
    for check in result.checks:
        case = TestCase(check.name, classname=f"{SUITE}.{result.format}", time=0.0)
        if check.passed:
            case.system_out = check.reason
        else:
            case.result = [Failure(message=check.reason, type_="ValidationFailure")]
        suite.add_testcase(case)
    suite.add_property("export", result.path)
    suite.add_property("format", result.format)
    if result.overridden:
        suite.add_property("gate_override_reason", str(result.override_reason))
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    return xml


def input_error_junit(export: str | os.PathLike[str], message: str) -> JUnitXml:
    """One errored case for input the checks could not start on (a missing export, a bad flag),
    so a CI test view shows the reason instead of "no test report found"."""
    suite = TestSuite(SUITE)
    case = TestCase("input", classname=f"{SUITE}.input", time=0.0)
    case.result = [Error(message=message, type_="InputError")]
    suite.add_testcase(case)
    suite.add_property("export", str(export))
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    return xml


def write_junit(result: ValidationResult | JUnitXml, path: str | os.PathLike[str]) -> Path:
    """Write the JUnit XML to `path` atomically (a CI step never reads half a file)."""
    buf = io.BytesIO()
    xml = result if isinstance(result, JUnitXml) else to_junit(result)
    xml.write(buf, pretty=True)
    return atomic_write_bytes(path, buf.getvalue())
