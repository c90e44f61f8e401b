"""A similarity report as files to download: CSV (every pair it kept) and one self-contained HTML page
(no script, no link outside it: it can be mailed to a committee and opened offline)."""

from collections.abc import Iterator

from grader import csv_export
from grader.similarity import MIN_SHARED_CHARS, Report, segments

# Pairs shown side by side in the HTML file, most similar first: the flagged ones, at least this many.
SIDE_BY_SIDE = 20

COLUMNS = [
    "rank",
    "a",
    "a_name",
    "b",
    "b_name",
    "score_percent",
    "a_share_percent",
    "b_share_percent",
    "a_lines",
    "b_lines",
    "likely_copied",
    "a_submission",
    "b_submission",
]


def csv_lines(report: Report) -> Iterator[str]:
    """Every pair the report kept, most similar first, with both students and both shares."""
    docs = {doc.key: doc for doc in report.documents}

    def rows():
        yield COLUMNS
        for rank, pair in enumerate(report.pairs, start=1):
            a, b = docs[pair.a], docs[pair.b]
            yield [
                rank,
                a.key,
                a.label,
                b.key,
                b.label,
                round(100 * pair.score, 1),
                round(100 * pair.share_a, 1),
                round(100 * pair.share_b, 1),
                pair.lines_a,
                pair.lines_b,
                "yes" if pair.flagged(report.threshold) else "no",
                a.submission_id or "",
                b.submission_id or "",
            ]

    return csv_export.lines(rows())


def html(report: Report) -> str:
    """The whole report as one HTML page: the pairs, and the most similar ones side by side."""
    from grader.web.common import templates  # the pages' templates, autoescaped

    docs = {doc.key: doc for doc in report.documents}
    shown = max(len(report.flagged), SIDE_BY_SIDE)
    side_by_side = [
        (
            pair,
            docs[pair.a],
            docs[pair.b],
            segments(docs[pair.a].code, pair.regions_a),
            segments(docs[pair.b].code, pair.regions_b),
        )
        for pair in report.pairs[:shown]
    ]
    return templates.env.get_template("similarity_export.html").render(
        report=report,
        labels={key: doc.label for key, doc in docs.items()},
        side_by_side=side_by_side,
        min_shared=MIN_SHARED_CHARS,
    )
