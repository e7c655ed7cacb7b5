"""Errors a person can act on.

Anything that goes wrong because of input or the machine (a bad spec value, a port in use, a
missing binary) is raised as `AirscaleError`: the CLI prints the problem and the fix and exits
with code 2, never a traceback.
"""

from __future__ import annotations


class AirscaleError(Exception):
    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return self.problem if not self.fix else f"{self.problem}\n  fix: {self.fix}"
