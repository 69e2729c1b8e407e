"""Golden files: real-world documents of each anchor (tests/golden/importers/<kind>/*.yaml,
each naming its source) compile to the Weft documents, warnings and notes beside them
(<name>.expected.yaml), and what they compile to passes the registry's own rules."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from registry.importers import convert
from registry.resources import validate_all

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "importers"
CASES = sorted(p for p in GOLDEN.glob("*/*.yaml") if not p.name.endswith(".expected.yaml"))


@pytest.mark.parametrize("source", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_golden_document_compiles_to_the_expected_weft_resources(source: Path) -> None:
    assert source.read_text().startswith("# source: "), "each golden file names its source"
    docs = [d for d in yaml.safe_load_all(source.read_text()) if d is not None]
    expected = yaml.safe_load(source.with_name(source.stem + ".expected.yaml").read_text())
    result = convert(docs)
    _, problems = validate_all(result.docs)
    assert result.docs == expected["resources"]
    assert result.warnings == expected["warnings"]
    assert result.notes == expected["notes"]
    assert result.problems + problems == expected["problems"]


def test_every_kind_has_enough_golden_documents() -> None:
    kinds = Counter(p.parent.name for p in CASES)
    assert set(kinds) == {
        "serviceprofile",
        "virtualservice",
        "destinationrule",
        "httproute",
        "trafficsplit",
        "gateway",
        "serviceentry",
    }
    # gateway/ holds sets (a Gateway with the VirtualServices or HTTPRoutes bound to it) of
    # kinds counted above; the other anchor kinds each have ten documents or more.
    assert min(n for kind, n in kinds.items() if kind not in ("gateway", "serviceentry")) >= 10
    assert kinds["gateway"] >= 2, kinds
    assert kinds["serviceentry"] >= 3, kinds  # egress: Istio's own documented examples


def test_every_expected_file_has_its_source_and_every_source_its_expected_file() -> None:
    expected = {p for p in GOLDEN.glob("*/*.expected.yaml")}
    assert expected == {p.with_name(p.stem + ".expected.yaml") for p in CASES}
