"""The package's imports run one way: no circle between modules or subpackages (tools/import_graph.py, which
counts lazy and TYPE_CHECKING imports too), and every subpackage imports only from the layers below it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "import_graph.py"

# Top to bottom; a unit may import from any layer below its own, never from its own layer or above.
LAYERS = (
    {"cli"},  # the command line: dispatches to the other entry points
    {"demo", "control", "export"},
    {"report"},
    {"analysis"},
    {"train"},
    {"engine"},
    {"data", "probe"},
    {"study"},
    {"model", "common"},
)


def run_tool(package: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), str(package)], capture_output=True, text=True, check=False)


def test_the_package_has_no_import_circle():
    result = run_tool(REPO / "plasticity_dist")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1] == "0 module circles, 0 subpackage circles"


def test_the_tool_finds_a_circle_hidden_in_a_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def later():\n    from pkg.a import x\n")
    result = run_tool(package)
    assert result.returncode == 1
    assert "module circle: a <-> b" in result.stdout


def test_subpackages_import_only_from_the_layers_below():
    layer_of = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}
    edges = [line.strip().split(" -> ") for line in run_tool(REPO / "plasticity_dist").stdout.splitlines()
             if line.startswith("  ")]
    assert edges, "the tool lists no subpackage imports"
    units = {unit for unit, _ in edges} | {target for _, targets in edges for target in targets.split(", ")}
    assert units <= set(layer_of), f"units without a layer: {sorted(units - set(layer_of))}"
    upward = [(unit, target) for unit, targets in edges for target in targets.split(", ")
              if layer_of[target] <= layer_of[unit]]
    assert upward == []
