"""The run report: one JSON document (schema ``schema/compat-report.schema.json``) and its renderings.

- :mod:`~compat.report.jsonreport`: :class:`ReportBuilder`, :func:`validate`, :func:`scrub`,
  :func:`load_report`, :func:`write_reports` (compat-report.json, .md, .html);
- :mod:`~compat.report.markdown`: a short summary for a CI step summary;
- :mod:`~compat.report.html`: one self-contained page with the matrix and every finding's evidence;
- :mod:`~compat.report.junit`: key facts as JUnit test-suite properties.
"""

from compat.report.html import render_html
from compat.report.jsonreport import (
    SCHEMA_VERSION,
    ReportBuilder,
    ReportSchemaError,
    load_report,
    schema,
    scrub,
    validate,
    write_reports,
)
from compat.report.junit import junit_properties
from compat.report.markdown import render_markdown

__all__ = [
    "SCHEMA_VERSION",
    "ReportBuilder",
    "ReportSchemaError",
    "junit_properties",
    "load_report",
    "render_html",
    "render_markdown",
    "schema",
    "scrub",
    "validate",
    "write_reports",
]
