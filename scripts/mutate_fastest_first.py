"""pytest plugin for `make mutate`: run a mutant's tests fastest first.

mutmut 3 runs each mutant's tests with `-x` in whatever order pytest collects them, so a mutant
that a 0.01 s test kills may first wait for a 10 s tiny-model run. The stats run of mutmut records
every test's duration in `mutmut-stats.json` (in the folder the tests run from); this plugin sorts
the collected tests by it, unknown tests last. A mutant's verdict does not change, only how soon
a killed one stops. scripts/mutate.py loads it with `-p mutate_fastest_first`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

STATS = Path("mutmut-stats.json")


def _durations() -> dict[str, float]:
    if not STATS.is_file():  # the stats run itself: nothing recorded yet
        return {}
    return json.loads(STATS.read_text()).get("duration_by_test", {})


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    durations = _durations()
    if durations:
        items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))
