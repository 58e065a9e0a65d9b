import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["slurm_cluster"]  # the `local_slurm` fixture: a real two-node Slurm cluster on localhost

# Every process the tests start (trainers, probes, Slurm jobs) sees the virtual environment's tools first,
# as an activated environment would; DeepSpeed rebuilds its JIT ops whenever the `ninja` it finds changes.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
# Processes started elsewhere (a `make demo` without that PATH, another checkout) share ~/.cache/torch_extensions
# and rebuild the op their way, so the next test process rebuilds it again (1-2 min each): the tests keep a
# build folder of this environment's own.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """Tiny en, zh and vi datasets made by the real preprocessing tool, read by every test that trains."""
    from runs import build_tiny_data  # here, not above: runs imports torch, which most test files never need

    return build_tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def zero3_reference(data_root, tmp_path_factory):
    """An uninterrupted 2-rank ZeRO-3 run of the tiny curriculum: the yardstick of the resume tests, and the
    checkpoints that the probe tests probe (its config carries their probe settings, with probes off)."""
    from runs import reference_overrides, train_to_end

    return train_to_end(tmp_path_factory.mktemp("zero3-reference") / "run", reference_overrides(data_root))


@pytest.fixture(scope="session")
def zero1_two_ranks(data_root, tmp_path_factory):
    """The tiny run under ZeRO-1 on 2 ranks through accelerate launch."""
    from runs import tiny_overrides, train_to_end

    return train_to_end(tmp_path_factory.mktemp("zero1") / "run", tiny_overrides(data_root, launch__zero_stage=1))


@pytest.fixture(scope="session")
def zero1_one_rank(data_root, tmp_path_factory):
    """The same run on 1 rank through plain `python -m`."""
    from runs import tiny_overrides, train_to_end

    return train_to_end(tmp_path_factory.mktemp("zero1-one-rank") / "run",
                        tiny_overrides(data_root, launch__zero_stage=1), processes=1)


@pytest.hookimpl(wrapper=True)  # the groups are set before any other hook, xdist's (which reads them) included
def pytest_collection_modifyitems(items: list[pytest.Item]):
    """The tests of a module with a module-scoped fixture (a training run, an export) share an xdist group, so
    `pytest -n N --dist loadgroup` builds that fixture once, not once on every worker that runs one of them.
    Tests of the local Slurm cluster keep the group slurm_cluster.py gives them."""
    for item in items:
        if "local_slurm" in getattr(item, "fixturenames", ()):
            continue
        fixture_defs = getattr(item, "_fixtureinfo", None)
        scopes = {defs[-1].scope for defs in fixture_defs.name2fixturedefs.values()} if fixture_defs else set()
        if "module" in scopes:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    return (yield)
