"""The import graph of the apps: no module imports itself back through others (late imports
inside functions count too: grimp reads every import statement)."""

import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("huntaze", "routing", "usage")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*APPS)


def _cycles(graph: grimp.ImportGraph) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each direct import a -> b for which b leads back to a, with that way back."""
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                found.append((importer, imported, back))
    return found


def test_no_module_of_the_apps_imports_itself_back(graph):
    assert _cycles(graph) == []


def test_the_check_finds_a_cycle_when_there_is_one(graph):
    # given one import that closes a loop (tasks already import shadow), taken out again after
    graph.add_import(importer="routing.shadow", imported="routing.tasks")
    try:
        # then
        cycles = _cycles(graph)
        assert ("routing.shadow", "routing.tasks", ("routing.tasks", "routing.shadow")) in cycles
    finally:
        graph.remove_import(importer="routing.shadow", imported="routing.tasks")
