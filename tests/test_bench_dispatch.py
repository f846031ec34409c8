"""`guardlink bench dispatch` runs at a reduced size and reports every figure it promises (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from bench import dispatch


def test_dispatch_benchmark_reports_index_baselines_and_exactness(capsys: pytest.CaptureFixture[str]) -> None:
    status = dispatch.main(["--json", "--guards", "5000", "--queries", "500", "--exact-queries", "500"])
    out = capsys.readouterr().out
    figures = json.loads(out)  # exactly one JSON object on stdout: progress goes to stderr
    assert status == 0
    for key in ("query_p50_us", "query_p99_us", "updates_per_s", "kdtree_p99_us", "brute_p99_us"):
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, key
    assert figures["query_p50_us"] <= figures["query_p99_us"] <= figures["query_max_us"]
    assert figures["exact"] is True and figures["mismatches"] == 0
    assert figures["guards"] == 5000 and figures["queries"] == 500 and figures["exact_queries"] == 500
