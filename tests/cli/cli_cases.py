"""Shared by the `rondo` CLI tests: a check that raises, and the --case
runner (each case gets a fresh temporary folder)."""

import argparse
import tempfile


def check(cond, what):
    """Fails the case with `what` unless `cond` holds."""
    if not cond:
        raise AssertionError(what)


def run_cases(cases, prefix):
    """Runs the case named by --case from `cases` (name -> fn(folder))."""
    p = argparse.ArgumentParser()
    p.add_argument("--case", choices=sorted(cases), required=True)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        cases[a.case](d)
    print(f"{a.case}: ok")
