"""The Ray executor's logic without a cluster: what a worker reserves, how it loads the model,
which methods travel by value, how outputs travel back, the cluster address checks, and the
driver's scheduling loop against an in-process stand-in for Ray (`FakeRay`: actors are plain
objects, calls run at once, streaming generators yield one record per job). The real cluster
runs in tests/test_ray_executor.py, inside its own loopback-only network namespace (`unshare -n`);
these start no Ray process at all (`ray.init` is replaced; "ray start" below is only in expected
error messages) and run in milliseconds, so mutation testing can afford them.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

pytest.importorskip("ray")

from genies.errors import ConfigError, JobError  # noqa: E402
from genies.interventions import Intervention, Scorer, Unfitted, register  # noqa: E402
from genies.interventions import registry  # noqa: E402
from genies.models.placement import Placement  # noqa: E402
from genies.pipeline import ray_executor  # noqa: E402
from genies.pipeline.executor import JobDisplay, JobRecord, RunLog  # noqa: E402
from genies.pipeline.jobs import FitJob, PredictJob  # noqa: E402
from genies.pipeline.ray_executor import (JobResources, ModelRecipe, _Call, _check_reachable, connect,  # noqa: E402
                                          publish_output, read_files, register_shipped, shipped_registrations,
                                          write_files)
from genies.pipeline.store import JobStore  # noqa: E402

import test_executor_units  # noqa: E402, F401 - registers pt_exec (before any test copies the registry)
from test_pipeline import SHIFTS, distributions  # noqa: E402 - registers pt_length and pt_zero

GIB = 2**30


# ---- JobResources ------------------------------------------------------------------------------

def test_resources_for_a_cpu_placement_are_one_cpu_and_no_gpu() -> None:
    assert JobResources.for_placement(Placement(device="cpu")) == JobResources(1.0, 0.0, None)
    assert JobResources.for_placement(Placement(device="cpu", gpus=3), memory=5) == JobResources(1.0, 0.0, 5)


def test_resources_for_a_cuda_placement_reserve_its_gpus() -> None:
    """`torch.device("cuda")` needs no GPU to exist, so this runs anywhere."""
    assert JobResources.for_placement(Placement(device="cuda")) == JobResources(1.0, 1.0, None)
    assert JobResources.for_placement(Placement(device="cuda:1", gpus=2), memory=7) == JobResources(1.0, 2.0, 7)
    assert isinstance(JobResources.for_placement(Placement(device="cuda")).num_gpus, float)


def test_actor_options_name_memory_only_when_reserved() -> None:
    assert JobResources().actor_options() == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert JobResources(2.0, 1.0, 3 * GIB).actor_options() == {"num_cpus": 2.0, "num_gpus": 1.0, "memory": 3 * GIB}


@pytest.mark.parametrize("resources, node, fits", [
    (JobResources(), {"CPU": 4.0}, 4),
    (JobResources(2.0), {"CPU": 5.0}, 2),
    (JobResources(), {}, 0),
    (JobResources(1.0, 1.0), {"CPU": 8.0, "GPU": 3.0}, 3),
    (JobResources(1.0, 2.0), {"CPU": 8.0, "GPU": 5.0}, 2),
    (JobResources(1.0, 1.0), {"CPU": 8.0}, 0),  # a node without GPUs takes no GPU job
    (JobResources(4.0, 1.0), {"CPU": 8.0, "GPU": 4.0}, 2),  # CPUs bind
    (JobResources(1.0, 0.0, 3 * GIB), {"CPU": 8.0, "memory": 10.0 * GIB}, 3),
    (JobResources(1.0, 0.0, 3 * GIB), {"CPU": 2.0, "memory": 10.0 * GIB}, 2),
    (JobResources(1.0, 0.0, 3 * GIB), {"CPU": 8.0}, 0),
])
def test_per_node_is_the_scarcest_resource(resources, node, fits) -> None:
    got = resources.per_node(node)
    assert got == fits and isinstance(got, int)


def test_describe_says_cpus_gpus_and_memory() -> None:
    assert JobResources().describe() == "1 CPU, 0 GPU"
    assert JobResources(2.0, 0.5, 3 * GIB // 2).describe() == "2 CPU, 0.5 GPU, 1.5 GiB"


# ---- ModelRecipe -------------------------------------------------------------------------------

def test_recipe_pins_the_drivers_resolved_placement(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    placement = Placement(device="auto", dtype="auto", quantize="none", gpus=2)
    recipe = ModelRecipe.for_run(Path("model"), "org/model", True, placement, "fp1")
    resolved = placement.torch_device.type  # "cpu" here, "cuda" on a GPU machine: pinned either way
    assert recipe.folder == tmp_path / "model" and recipe.folder.is_absolute()
    assert (recipe.name, recipe.trust_remote_code, recipe.fingerprint) == ("org/model", True, "fp1")
    assert recipe.placement == Placement(device=resolved, dtype=str(placement.torch_dtype).removeprefix("torch."),
                                         quantize="none", gpus=2)
    assert recipe.precision == placement.precision_key()


def test_recipe_of_a_cuda_placement_names_cuda_and_its_dtype() -> None:
    placement = Placement(device="cuda:1", dtype="bfloat16", gpus=2)
    recipe = ModelRecipe.for_run(Path("/m"), "m", False, placement, "fp")
    assert recipe.placement == Placement(device="cuda", dtype="bfloat16", quantize="none", gpus=2)
    assert recipe.precision == {"dtype": "bfloat16", "quantize": "none"}
    assert recipe.trust_remote_code is False
    quantized = ModelRecipe.for_run(Path("/m"), "m", False, Placement(device="cuda", quantize="4bit"), "fp")
    assert quantized.placement == Placement(device="cuda", dtype="bfloat16", quantize="4bit")
    assert quantized.precision["quantize"] == "4bit"


def test_recipe_of_a_loaded_model_uses_its_placement_or_its_device_and_dtype() -> None:
    import torch

    placed = SimpleNamespace(path=Path("/models/a"), name="a", trust_remote_code=True, fingerprint="fpa",
                             placement=Placement(device="cpu", dtype="bfloat16"),
                             device=torch.device("cpu"), dtype=torch.float16)
    recipe = ModelRecipe.of(placed)
    assert (recipe.folder, recipe.name, recipe.trust_remote_code, recipe.fingerprint) == (
        Path("/models/a"), "a", True, "fpa")
    assert recipe.placement == Placement(device="cpu", dtype="bfloat16")
    unplaced = SimpleNamespace(**{**vars(placed), "placement": None})
    assert ModelRecipe.of(unplaced).placement == Placement(device="cpu", dtype="float16")
    assert ModelRecipe.of(unplaced).precision == {"dtype": "float16", "quantize": "none"}
    on_gpu = SimpleNamespace(**{**vars(unplaced), "device": torch.device("cuda")})  # no GPU needed to name one
    assert ModelRecipe.of(on_gpu).placement == Placement(device="cuda", dtype="float16")


@pytest.fixture
def fake_loading(monkeypatch):
    """`load_folder` and `model_fingerprint` recorded instead of run; the loaded model's
    fingerprint is `loaded_fingerprint[0]`."""
    from genies.models import loading

    calls: list[tuple] = []
    loaded_fingerprint = ["fp"]

    def load_folder(folder, *, name, trust_remote_code, placement):
        calls.append(("load_folder", folder, name, trust_remote_code, placement))
        return SimpleNamespace(fingerprint=loaded_fingerprint[0])

    def model_fingerprint(name, *, trust_remote_code):
        calls.append(("model_fingerprint", name, trust_remote_code))
        return Path("/resolved/here"), "ignored"

    monkeypatch.setattr(loading, "load_folder", load_folder)
    monkeypatch.setattr(loading, "model_fingerprint", model_fingerprint)
    return calls, loaded_fingerprint


def _cpu_recipe(folder: Path, fingerprint: str = "fp", precision: dict | None = None) -> ModelRecipe:
    placement = Placement(device="cpu", dtype="float32")
    return ModelRecipe(folder, "org/m", True, placement, fingerprint,
                       precision if precision is not None else placement.precision_key())


def test_a_worker_loads_the_drivers_folder_when_it_sees_it(tmp_path, fake_loading) -> None:
    calls, _ = fake_loading
    (tmp_path / "config.json").write_text("{}")
    recipe = _cpu_recipe(tmp_path)
    assert recipe.load().fingerprint == "fp"
    assert calls == [("load_folder", tmp_path, "org/m", True, recipe.placement)]


def test_a_worker_without_the_folder_resolves_the_model_by_name(tmp_path, fake_loading) -> None:
    calls, _ = fake_loading
    recipe = _cpu_recipe(tmp_path / "absent")
    recipe.load()
    assert calls == [("model_fingerprint", "org/m", True),
                     ("load_folder", Path("/resolved/here"), "org/m", True, recipe.placement)]


def test_a_worker_refuses_another_precision_or_another_model(tmp_path, fake_loading) -> None:
    calls, loaded = fake_loading
    (tmp_path / "config.json").write_text("{}")
    other = {"dtype": "float32", "quantize": "4bit", "bitsandbytes": "0.1"}
    with pytest.raises(JobError) as err:
        _cpu_recipe(tmp_path, precision=other).load()
    assert str(err.value) == (
        "this Ray worker would load org/m at precision {'dtype': 'float32', 'quantize': 'none'}, the driver "
        f"planned {other}: install the same versions on every node")
    assert calls == []
    loaded[0] = "fp-other"
    with pytest.raises(JobError) as err:
        _cpu_recipe(tmp_path).load()
    assert str(err.value) == (
        f"the model org/m at {tmp_path} on this Ray worker is not the driver's (fingerprint fp-other, expected "
        "fp): share GENIES_HOME or install the same model on every node")


# ---- methods registered at run time ------------------------------------------------------------

@register("pt_unit_b", family="fine-tuning", description="test stand-in b, registered at run time")
@dataclass
class ShippedB(Intervention[Unfitted]):
    def fit(self, lm, train, ctx) -> Unfitted:
        return Unfitted()

    def scorer(self, lm, fitted, ctx) -> Scorer:
        raise NotImplementedError


@register("pt_unit_a", family="representation", description="test stand-in a, registered at run time")
@dataclass
class ShippedA(ShippedB):
    pass


def _plan_of(*method_names: str) -> SimpleNamespace:
    return SimpleNamespace(fits={f"k{i}": SimpleNamespace(method_name=n) for i, n in enumerate(method_names)})


def _no_plugins(monkeypatch, plugins: tuple[str, ...] = ()) -> None:
    """The installed plugins of genies' entry-point group are `plugins` (none of another group)."""
    def entry_points(**selection):
        listed = selection == {"group": registry.ENTRY_POINT_GROUP}
        return [SimpleNamespace(name=n) for n in plugins] if listed else []

    monkeypatch.setattr(ray_executor, "entry_points", entry_points)


def test_run_time_registrations_are_shipped_by_value_once_each_in_name_order(monkeypatch) -> None:
    from ray import cloudpickle

    _no_plugins(monkeypatch)
    blobs = shipped_registrations(_plan_of("pt_unit_b", "zero_shot", "pt_unit_a", "pt_unit_b"))
    assert len(blobs) == 2  # zero_shot is genies' own: every worker resolves it by name
    assert __name__ not in cloudpickle.list_registry_pickle_by_value()  # registered only while pickling
    # By value: unpickling never imports this test module (a worker does not have it).
    monkeypatch.setitem(sys.modules, __name__, None)
    classes = [pickle.loads(blob) for blob in blobs]
    assert [c.name for c in classes] == ["pt_unit_a", "pt_unit_b"]


def test_a_module_already_shipped_by_value_stays_so(monkeypatch) -> None:
    from ray import cloudpickle

    _no_plugins(monkeypatch)
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        assert len(shipped_registrations(_plan_of("pt_unit_a"))) == 1
        assert __name__ in cloudpickle.list_registry_pickle_by_value()
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def test_plugins_and_genies_methods_are_not_shipped(monkeypatch) -> None:
    _no_plugins(monkeypatch, plugins=("pt_unit_a",))
    assert shipped_registrations(_plan_of("pt_unit_a", "zero_shot")) == ()
    assert len(shipped_registrations(_plan_of("pt_unit_a", "pt_unit_b"))) == 1


def test_a_main_module_class_is_shipped_without_registering_main(monkeypatch) -> None:
    from ray import cloudpickle

    _no_plugins(monkeypatch)
    main_class = type("MainStandIn", (ShippedB,), {"__module__": "__main__"})
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "pt_unit_main": main_class})
    registered = []
    monkeypatch.setattr(cloudpickle, "register_pickle_by_value", registered.append)
    [blob] = shipped_registrations(_plan_of("pt_unit_main"))
    assert registered == [] and pickle.loads(blob).__name__ == "MainStandIn"


def test_register_shipped_registers_each_class_under_its_name_family_and_description(monkeypatch) -> None:
    _no_plugins(monkeypatch)
    blobs = shipped_registrations(_plan_of("pt_unit_a", "pt_unit_b"))
    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items()
                                                if k not in ("pt_unit_a", "pt_unit_b")})
    register_shipped(blobs)
    a, b = registry._REGISTRY["pt_unit_a"], registry._REGISTRY["pt_unit_b"]
    assert (a.name, a.family, a.description) == ("pt_unit_a", "representation",
                                                  "test stand-in a, registered at run time")
    assert (b.name, b.family, b.description) == ("pt_unit_b", "fine-tuning",
                                                  "test stand-in b, registered at run time")


# ---- outputs travelling back -------------------------------------------------------------------

def test_files_round_trip_with_nested_folders(tmp_path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "b.json").write_bytes(b"{}")
    (src / "a.bin").write_bytes(b"\x00\x01")
    (src / "sub" / "deeper" / "c.txt").write_bytes(b"c")
    (src / "empty").mkdir()
    files = read_files(src)
    assert list(files.items()) == [("a.bin", b"\x00\x01"), ("b.json", b"{}"), ("sub/deeper/c.txt", b"c")]
    write_files(tmp_path / "dst", files)
    assert read_files(tmp_path / "dst") == files


def test_publish_output_writes_a_fit_folder_and_a_predictions_file(tmp_path) -> None:
    store = JobStore(tmp_path / "jobs")
    publish_output(store, JobRecord("kf", "fit", "fit x", "done"), {"fitted.json": b"{}", "sub/t.bin": b"t"})
    assert store.has_fit("kf") and read_files(store.fit_dir("kf")) == {"fitted.json": b"{}", "sub/t.bin": b"t"}
    publish_output(store, JobRecord("kp", "predict", "predict x", "done"), {"kp.json": b'{"p": 1}'})
    assert store.predict_file("kp").read_bytes() == b'{"p": 1}'
    assert sorted(p.name for p in store.predict_file("kp").parent.iterdir()) == ["kp.json"]


# ---- joining a cluster ---------------------------------------------------------------------------

@pytest.fixture
def fake_init(monkeypatch):
    """ray.init recorded (raising `fail[0]` when set), Ray not yet initialized, no RAY_ADDRESS."""
    import ray

    calls: list[dict] = []
    fail: list[Exception | None] = [None]

    def init(**kwargs):
        if fail[0] is not None:
            raise fail[0]
        calls.append(kwargs)

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls, fail


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connect_leaves_an_initialized_ray_alone(monkeypatch, fake_init) -> None:
    import ray

    calls, _ = fake_init
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    assert connect("nowhere") is False and calls == []


def test_connect_without_an_address_starts_a_local_ray_on_this_processs_cpus(fake_init) -> None:
    calls, _ = fake_init
    assert connect(None) is True
    cpus = len(os.sched_getaffinity(0))
    assert calls == [{"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False,
                      "logging_level": logging.WARNING}]


def test_a_local_ray_gets_the_cpus_this_process_may_use(fake_init, monkeypatch) -> None:
    calls, _ = fake_init
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})  # pinned to one core of many
    connect(None)
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS: no affinity, the machine's count
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    connect(None)
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one
    connect(None)
    assert [c["num_cpus"] for c in calls] == [1, 6, 1]


def test_a_local_ray_that_cannot_start_is_one_line(fake_init) -> None:
    _, fail = fake_init
    fail[0] = RuntimeError("boom\nsecond line")
    with pytest.raises(ConfigError) as err:
        connect(None)
    assert str(err.value) == ("could not start a local Ray (RuntimeError: boom); or join a running cluster with "
                              "--ray-address")


def test_connect_joins_a_listening_address(fake_init, listening) -> None:
    calls, _ = fake_init
    assert connect(f"127.0.0.1:{listening}") is True
    assert calls == [{"address": f"127.0.0.1:{listening}", "log_to_driver": False, "logging_level": logging.WARNING}]


def test_ray_address_in_the_environment_names_the_cluster(fake_init, listening, monkeypatch) -> None:
    calls, _ = fake_init
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{listening}")
    assert connect(None) is True and calls[0]["address"] == f"127.0.0.1:{listening}"


def test_a_cluster_that_refuses_the_driver_is_one_line(fake_init, listening) -> None:
    _, fail = fake_init
    fail[0] = ConnectionError("version mismatch\nmore")
    with pytest.raises(ConfigError) as err:
        connect(f"127.0.0.1:{listening}")
    assert str(err.value) == (
        f"--ray-address 127.0.0.1:{listening}: could not join the Ray cluster (ConnectionError: version mismatch); "
        "check that every node runs the same Ray and genies, and the cluster's auth token (RAY_AUTH_TOKEN)")


@pytest.mark.parametrize("address", ["nowhere", ":6379", "host:", "host:63a9", "6379"])
def test_a_malformed_address_is_refused(address, fake_init) -> None:
    with pytest.raises(ConfigError) as err:
        connect(address)
    assert str(err.value) == f"--ray-address {address!r}: expected auto or HOST:PORT, e.g. 10.0.0.1:6379"
    assert fake_init[0] == []


def test_nothing_listening_is_one_line_naming_the_fix(fake_init) -> None:
    port = _closed_port()
    with pytest.raises(ConfigError) as err:
        connect(f"127.0.0.1:{port}")
    assert str(err.value) == (
        f"--ray-address 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port} (Connection refused); start "
        f"its head there with `ray start --head --port={port}`, correct the address, or leave out --ray-address to "
        "start a local Ray")


def test_an_ipv6_address_is_connected_without_its_brackets(monkeypatch) -> None:
    tried = []

    class Connection:
        def close(self) -> None:
            tried.append("closed")

    def create_connection(address, timeout):
        tried.append((address, timeout))
        return Connection()

    monkeypatch.setattr(socket, "create_connection", create_connection)
    _check_reachable("[::1]:6379")
    _check_reachable("Xnode:6379")  # only the brackets go, whatever the host's letters
    assert tried == [(("::1", 6379), 5.0), "closed", (("Xnode", 6379), 5.0), "closed"]


def test_a_connection_error_without_strerror_names_its_type(monkeypatch) -> None:
    def create_connection(address, timeout):
        raise TimeoutError()

    monkeypatch.setattr(socket, "create_connection", create_connection)
    with pytest.raises(ConfigError, match=r"^--ray-address h:1: no Ray cluster answers at h:1 \(TimeoutError\); "):
        _check_reachable("h:1")


def test_auto_finds_the_running_cluster_or_says_there_is_none(monkeypatch, listening) -> None:
    from ray._private import services

    asked = []

    def found(address):
        asked.append(address)
        return f"127.0.0.1:{listening}"

    monkeypatch.setattr(services, "canonicalize_bootstrap_address_or_die", found)
    _check_reachable("auto")
    assert asked == ["auto"]

    def none(address):
        raise ConnectionError("Could not find any running Ray instance.\nPlease start one")

    monkeypatch.setattr(services, "canonicalize_bootstrap_address_or_die", none)
    with pytest.raises(ConfigError) as err:
        _check_reachable("auto")
    assert str(err.value) == (
        "--ray-address auto: no running Ray cluster found (ConnectionError: Could not find any running Ray "
        "instance.); start one with `ray start --head` or leave out --ray-address to start a local Ray")


# ---- a group's calls ---------------------------------------------------------------------------

def _jobs(n_predicts: int = 2) -> tuple[FitJob, list[PredictJob]]:
    fit = FitJob("m", "m", "{}", "src", "kfit")
    return fit, [PredictJob(fit, f"d{i}", "test", f"kp{i}") for i in range(n_predicts)]


def test_a_call_remains_with_the_jobs_not_received_in_order() -> None:
    fit, (p0, p1) = _jobs()
    call = _Call(actor=None, shares=True, jobs=[fit, p0, p1])
    assert call.remaining() == [fit, p0, p1]
    call.received.add("kp0")
    assert call.remaining() == [fit, p1]


def test_a_lost_worker_fails_its_running_job_and_skips_the_rest(tmp_path) -> None:
    fit, (p0, p1) = _jobs()
    call = _Call(actor=None, shares=True, jobs=[fit, p0, p1], received={"kfit"})
    display = JobDisplay(3, RunLog(tmp_path / "log.txt"), plain=True, console=None)
    ray_executor.RayExecutor._lost(call, RuntimeError("worker died\ndetails"), display)
    assert display.records == [
        JobRecord("kp0", "predict", p0.label, "failed", 0.0, "RuntimeError: worker died"),
        JobRecord("kp1", "predict", p1.label, "failed", 0.0, f"not run: {p0.label} failed")]
    assert "worker died\ndetails" in (tmp_path / "log.txt").read_text()  # the whole error as its traceback
    call = _Call(actor=None, shares=True, jobs=[fit, p0])
    display = JobDisplay(2, RunLog(tmp_path / "log2.txt"), plain=True, console=None)
    ray_executor.RayExecutor._lost(call, RuntimeError("gone"), display)
    assert [(r.kind, r.error) for r in display.records] == [("fit", "RuntimeError: gone"),
                                                            ("predict", f"not run: {fit.label} failed")]
    call.received.update({"kfit", "kp0"})
    ray_executor.RayExecutor._lost(call, RuntimeError("late"), display)
    assert len(display.records) == 2  # nothing left to fail


# ---- the driver's loop, against an in-process stand-in for Ray --------------------------------

class FakeRef:
    """An object reference: a value or an error, ready from `ready_at` (time.monotonic) on."""

    def __init__(self, value=None, error: Exception | None = None, ready_at: float = 0.0) -> None:
        self.value, self.error, self.ready_at = value, error, ready_at

    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at


class FakeStream:
    """A streaming actor call: each `next` is a reference to the next yielded item. A fault
    ("replay", n) restarts the call from its start after n items (Ray retrying the call of a
    restarted actor); ("lose", n) makes the item after n an error (the worker died for good)."""

    ready_at = 0.0

    def __init__(self, start, fault: tuple[str, int] | None) -> None:
        self.start, self.fault, self.items, self.count = start, fault, start(), 0

    def ready(self) -> bool:
        return True

    def __next__(self) -> FakeRef:
        from ray.exceptions import RayError

        kind, after = self.fault or ("", -1)
        if self.count == after:
            self.fault = None
            if kind == "lose":
                return FakeRef(error=RayError("the worker died\nRay's details"))
            self.items = self.start()  # replay: the retried call yields from the first job again
        item = next(self.items)
        self.count += 1
        return FakeRef(item)


class FakeActor:
    """A Ray actor whose object lives in this process; `start` is its start-up delay in seconds,
    or "fail" when its constructor cannot run on its node."""

    def __init__(self, fake: FakeRay, cls, recipe, start) -> None:
        self.fake, self.recipe, self.groups = fake, recipe, []
        self.up_at = time.monotonic() + (0.0 if start == "fail" else start)
        self.worker = None if start == "fail" else cls(recipe)
        self.shares_store = SimpleNamespace(remote=self._shares_store)
        self.run = SimpleNamespace(remote=self._run)

    def _shares_store(self) -> FakeRef:
        from ray.exceptions import RayError

        if self.worker is None:
            return FakeRef(error=RayError("ModuleNotFoundError: No module named 'genies'"))
        return FakeRef(self.worker.shares_store(), ready_at=self.up_at)

    def _run(self, fit, predicts, fit_files) -> FakeStream:
        self.groups.append((fit.label, [p.key for p in predicts], fit_files))
        self.fake.dispatched.append(time.monotonic())
        return FakeStream(lambda: self.worker.run(fit, predicts, fit_files), self.fake.faults.get(fit.label))


class FakeRay:
    """What of Ray the executor calls, run in this process: `nodes` as `ray.nodes()` lists them,
    `starts` the start-up of each actor in creation order (default: at once)."""

    def __init__(self, nodes: list[dict], starts: list | None = None) -> None:
        self.node_list, self.starts = nodes, list(starts or [])
        self.actors: list[FakeActor] = []
        self.options: dict = {}
        self.put_values: list = []
        self.fetched: list = []  # every value ray.get returned
        self.dispatched: list[float] = []  # when each group was handed to an actor
        self.killed: list[FakeActor] = []
        self.faults: dict[str, tuple[str, int]] = {}
        self.initialized, self.inits, self.shutdowns = True, [], 0

    def install(self, monkeypatch) -> FakeRay:
        import ray

        for name in ("remote", "get", "put", "wait", "kill", "nodes", "init", "shutdown", "is_initialized"):
            monkeypatch.setattr(ray, name, getattr(self, name))
        return self

    def remote(self, cls):
        fake = self

        class ActorClass:
            @staticmethod
            def options(**options):
                fake.options = options
                return ActorClass

            @staticmethod
            def remote(recipe) -> FakeActor:
                start = fake.starts.pop(0) if fake.starts else 0.0
                fake.actors.append(FakeActor(fake, cls, recipe, start))
                return fake.actors[-1]

        return ActorClass

    def get(self, ref: FakeRef):
        if ref.error is not None:
            raise ref.error
        self.fetched.append(ref.value)
        return ref.value

    def put(self, value) -> FakeRef:
        self.put_values.append(value)
        return FakeRef(value)

    def wait(self, refs: list, *, num_returns: int, timeout: float | None):
        assert num_returns == 1
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for ref in refs:
                if ref.ready():
                    return [ref], [r for r in refs if r is not ref]
            upcoming = [ref.ready_at for ref in refs if ref.ready_at != float("inf")]
            if deadline is None and not upcoming:
                raise AssertionError("ray.wait without a timeout on references that never get ready")
            if deadline is not None and time.monotonic() >= deadline:
                return [], list(refs)
            time.sleep(0.01)

    def kill(self, actor: FakeActor) -> None:
        self.killed.append(actor)

    def nodes(self) -> list[dict]:
        return self.node_list

    def init(self, **kwargs) -> None:
        self.inits.append(kwargs)
        self.initialized = True

    def shutdown(self) -> None:
        self.shutdowns += 1

    def is_initialized(self) -> bool:
        return self.initialized


def node(cpus: float, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, "memory": 8.0 * GIB}}


@dataclass(frozen=True)
class StubModel:
    """A ModelRecipe stand-in: the stand-in methods never read the model, but the worker loads it."""

    placement: Placement = Placement(device="cpu", dtype="float32")

    def load(self) -> SimpleNamespace:
        LOADS.append(1)
        return SimpleNamespace(name="stub")


LOADS: list[int] = []


@pytest.fixture
def keep_torch_threads(monkeypatch) -> Iterator[None]:
    """Workers run in this process: undo what they change in it. Torch's thread count, and the
    registered classes: unpickling a class shipped by value in the process that pickled it gives
    back the original class with its methods replaced by copies (whose module globals are copies
    too), which a real worker, in a process of its own, never does to the driver."""
    import torch

    classes = {cls: dict(vars(cls)) for cls in registry._REGISTRY.values()}
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    for cls, attributes in classes.items():
        for name, value in attributes.items():
            if name not in ("__dict__", "__weakref__") and vars(cls).get(name) is not value:
                setattr(cls, name, value)


def _plan_and_data(recorder: dict | None = None):
    """test_pipeline's stand-ins (pt_length, baseline pt_zero) over its two shifts: 3 groups, 9 jobs.
    With `recorder` (its hyperparameters), also test_executor_units' pt_exec, whose fitted state is
    the random draws of its seed: 4 groups, 13 jobs."""
    from genies.pipeline.plan import build_plan, configure_methods

    dists = distributions()
    interventions = ["pt_length"] if recorder is None else ["pt_length", "pt_exec"]
    methods = configure_methods([*interventions, "pt_zero"], None, None if recorder is None else {"pt_exec": recorder})
    plan = build_plan(interventions=interventions, shifts=SHIFTS, methods=methods, seed=0, model_fingerprint="fp",
                      precision={"dtype": "float32", "quantize": "none"},
                      data_hash=lambda n, s: dists[n].content_hash(s), baseline="pt_zero",
                      target_tuned=("pt_length",))
    return plan, dists


def _env(store_root: Path, dists, activation_root: Path | None = None):
    from genies.pipeline.executor import JobEnv

    activations = None if activation_root is None else SimpleNamespace(root=activation_root)
    return JobEnv(load_model=lambda: pytest.fail("the driver must not load the model"),
                  distribution=dists.__getitem__, store=JobStore(store_root), seed=0, activation_store=activations)


def _local(tmp_path: Path, plan, dists) -> tuple[list[tuple], JobStore]:
    """The local executor's records (without timings) and store: what a Ray run must reproduce."""
    from genies.pipeline.executor import LocalExecutor

    env = _env(tmp_path / "local-store", dists)
    env.load_model = lambda: SimpleNamespace(name="stub")
    records = LocalExecutor(plain=True).execute(plan, env, RunLog(tmp_path / "local" / "log.txt"))
    return [_plain(r) for r in records], env.store


def _plain(rec: JobRecord) -> tuple:
    return rec.key, rec.kind, rec.label, rec.status, rec.error


def _outputs(store: JobStore) -> dict[str, bytes]:
    return {path.relative_to(store.root).as_posix(): path.read_bytes()
            for sub in ("fit", "predict") if (store.root / sub).is_dir()
            for path in sorted((store.root / sub).rglob("*")) if path.is_file()}


def _execute(tmp_path: Path, fake: FakeRay, plan, env, monkeypatch, **kwargs) -> list[JobRecord]:
    fake.install(monkeypatch)
    executor = ray_executor.RayExecutor(StubModel(), None, **{"plain": True, **kwargs})
    return executor.execute(plan, env, RunLog(tmp_path / "run" / "log.txt"))


def _lines(text: str) -> list[str]:
    """The display's plain lines without their timings."""
    return [re.sub(r" \d+\.\ds ", " ", line) for line in text.splitlines()]


def test_one_worker_computes_what_the_local_executor_does(tmp_path, monkeypatch, keep_torch_threads,
                                                          capsys) -> None:
    from genies.data.schema import Distribution
    from genies.models.activations import ActivationStore

    plan, dists = _plan_and_data(recorder={})
    want, local_store = _local(tmp_path, plan, dists)
    shown = _lines(capsys.readouterr().out)
    LOADS.clear()
    fake = FakeRay([node(1.0)])
    env = _env(tmp_path / "cache" / "jobs", dists, activation_root=tmp_path / "acts")
    records = _execute(tmp_path, fake, plan, env, monkeypatch)
    assert [_plain(r) for r in records] == want and len(want) == plan.n_jobs == 13
    assert {r[3] for r in want} == {"done"} and _lines(capsys.readouterr().out) == shown  # the same display
    assert _outputs(env.store) == _outputs(local_store)  # pt_exec's state: the draws of the run's seed
    worker_calls = registry._REGISTRY["pt_exec"].fit.__globals__["CALLS"]  # the shipped copy's
    fit_call = [c for c in worker_calls if c[0] == "fit"][-1]  # after the local run's
    assert isinstance(fit_call[3], ActivationStore) and fit_call[3].root == tmp_path / "acts"
    assert sorted(v.id for v in fake.fetched if isinstance(v, Distribution)) == ["src", "tgt", "tgt2"]
    [actor] = fake.actors
    assert [label for label, _, _ in actor.groups] == [fit.label for fit in plan.fits.values()]
    assert LOADS == [1]  # one model load for every group of the worker
    assert fake.options == {"max_restarts": -1, "max_task_retries": 3, "num_cpus": 1.0, "num_gpus": 0.0}
    assert fake.killed == [actor] and fake.shutdowns == 0  # Ray was up already: left running
    recipe = actor.recipe
    assert recipe.model == StubModel() and recipe.seed == 0 and recipe.threads == 1
    assert recipe.store_root == (tmp_path / "cache" / "jobs").resolve() and recipe.activation_root == tmp_path / "acts"
    assert [pickle.loads(blob).name for blob in recipe.registrations] == ["pt_exec", "pt_length", "pt_zero"]
    assert recipe.probe.parent == env.store.root.resolve()
    assert recipe.probe.name.startswith(".ray-probe-") and not recipe.probe.exists()  # removed at the end
    assert actor.worker.shared and actor.worker.activations.root == tmp_path / "acts"
    assert sorted(recipe.distributions) == ["src", "tgt", "tgt2"]
    assert [ref.value for _, ref in sorted(recipe.distributions.items())] == [dists[n] for n in ("src", "tgt", "tgt2")]
    assert len(fake.put_values) == 3  # each distribution shipped once


def test_the_display_names_each_job_as_it_starts(tmp_path, monkeypatch, keep_torch_threads) -> None:
    started: list[str] = []

    class Recording(JobDisplay):
        def started(self, label: str) -> None:
            started.append(label)

    monkeypatch.setattr(ray_executor, "JobDisplay", Recording)
    plan, dists = _plan_and_data()
    records = _execute(tmp_path, FakeRay([node(1.0)]), plan, _env(tmp_path / "store", dists), monkeypatch)
    assert started == [r.label for r in records]


def test_rich_progress_goes_to_the_given_console(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    out = io.StringIO()
    _execute(tmp_path, FakeRay([node(1.0)]), plan, _env(tmp_path / "store", dists), monkeypatch, plain=False,
             console=Console(file=out, width=200))
    assert re.search(r"jobs .* 9/9 ", out.getvalue()) and "fit pt_zero on (no training data)" in out.getvalue()


def test_ray_started_by_the_executor_is_shut_down(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    fake = FakeRay([node(1.0)])
    fake.initialized = False
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert len(records) == 9 and fake.inits and fake.shutdowns == 1


def test_workers_outside_the_store_send_their_outputs_back(tmp_path, monkeypatch, keep_torch_threads) -> None:
    """GENIES_RAY_SHARED_FS=0: each worker computes in its node's store (GENIES_HOME), and the
    driver writes what comes back; the driver's store ends as a local run's."""
    plan, dists = _plan_and_data(recorder={"fail_on": "tgt2"})
    want, local_store = _local(tmp_path, plan, dists)
    monkeypatch.setenv("GENIES_RAY_SHARED_FS", "0")
    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "node-home"))
    fake = FakeRay([node(2.0)])
    env = _env(tmp_path / "store", dists, activation_root=tmp_path / "acts")
    records = _execute(tmp_path, fake, plan, env, monkeypatch)
    assert sorted(_plain(r) for r in records) == sorted(want) and len(want) == 13
    assert [r[4] for r in want if r[3] == "failed"] == ["RuntimeError: cannot score tgt2"]  # sends nothing back
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Traceback" in log and "RuntimeError: cannot score tgt2" in log  # the worker's traceback, logged
    assert _outputs(env.store) == _outputs(local_store)
    assert _outputs(JobStore(tmp_path / "node-home" / "jobs")) == _outputs(local_store)
    assert len(fake.actors) == 2 and all(not a.worker.shared for a in fake.actors)
    assert all(a.worker.activations.root == tmp_path / "node-home" / "activations" for a in fake.actors)
    assert all(a.groups for a in fake.actors) and sum(len(a.groups) for a in fake.actors) == 4


def test_a_resumed_run_sends_only_what_is_missing(tmp_path, monkeypatch, keep_torch_threads) -> None:
    """Complete groups are reported cached before any worker starts; a group whose fit is stored
    sends the worker that fit (a worker outside the store) and only the missing predictions."""
    plan, dists = _plan_and_data()
    want, local_store = _local(tmp_path, plan, dists)
    import shutil

    shutil.copytree(local_store.root, tmp_path / "store")
    store = JobStore(tmp_path / "store")
    (trained, predicts), (lost_fit, lost_predicts) = [(f, plan.predicts_of(f)) for f in plan.fits.values()
                                                      if len(plan.predicts_of(f)) > 1][:2]
    gone = predicts[1]
    store.predict_file(gone.key).unlink()
    shutil.rmtree(store.fit_dir(lost_fit.key))
    for p in lost_predicts:
        store.predict_file(p.key).unlink()
    monkeypatch.setenv("GENIES_RAY_SHARED_FS", "0")
    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "node-home"))
    fake = FakeRay([node(1.0)])
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert _outputs(store) == _outputs(local_store)
    status = {r.key: r.status for r in records}
    recomputed = {gone.key, lost_fit.key, *(p.key for p in lost_predicts)}
    assert {k for k, s in status.items() if s == "done"} == recomputed and len(records) == 9
    assert status[trained.key] == "cached" and set(status.values()) == {"done", "cached"}
    assert sorted(_plain(r)[:3] for r in records) == sorted(r[:3] for r in want)  # every job's key, kind, label
    cached_first = [r.key for r in records[:9 - len(recomputed) - 1]]
    assert gone.key not in cached_first and trained.key not in cached_first
    [actor] = fake.actors
    sent = {label: (keys, files) for label, keys, files in actor.groups}
    assert sent[trained.label][0] == [gone.key]
    assert sent[trained.label][1] == read_files(store.fit_dir(trained.key))
    assert sent[lost_fit.label] == ([p.key for p in lost_predicts], None)


def test_a_shared_worker_is_sent_no_fit_files(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    _, local_store = _local(tmp_path, plan, dists)
    import shutil

    shutil.copytree(local_store.root, tmp_path / "store")
    store = JobStore(tmp_path / "store")
    fits = [f for f in plan.fits.values() if plan.predicts_of(f)][:2]
    for fit in fits:  # two groups for one worker: the second goes to it as it comes back idle
        store.predict_file(plan.predicts_of(fit)[0].key).unlink()
    fake = FakeRay([node(1.0)])
    _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert [(label, files) for label, _, files in fake.actors[0].groups] == [(f.label, None) for f in fits]


def test_a_fully_cached_run_starts_no_worker(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    want, local_store = _local(tmp_path, plan, dists)
    fake = FakeRay([])  # asking this cluster for room would fail
    records = _execute(tmp_path, fake, plan, _env(local_store.root, dists), monkeypatch)
    assert [r[:3] for r in map(_plain, records)] == [r[:3] for r in want]
    assert {r.status for r in records} == {"cached"} and fake.actors == []
    assert not list(local_store.root.glob(".ray-probe-*"))


@pytest.mark.parametrize("nodes, wanted", [
    ([node(8.0)], 3),  # more room than groups: one worker per group
    ([node(1.0), node(1.0)], 2),
    ([node(1.0), node(4.0, alive=False)], 1),  # a dead node has no room
])
def test_as_many_workers_as_groups_and_room(tmp_path, monkeypatch, keep_torch_threads, nodes, wanted) -> None:
    plan, dists = _plan_and_data()
    fake = FakeRay(nodes)
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert len(fake.actors) == wanted and len(records) == 9 and fake.killed == fake.actors
    assert sum(len(a.groups) for a in fake.actors) == 3


def test_a_cluster_without_room_for_one_job_is_one_line(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    fake = FakeRay([node(0.5), node(8.0, alive=False)])
    with pytest.raises(ConfigError) as err:
        _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert str(err.value) == ("the Ray cluster has no node with room for one job (1 CPU, 0 GPU): add such nodes, "
                              "or run on CPU (--device cpu)")
    assert not list((tmp_path / "store").glob(".ray-probe-*"))


def test_a_worker_that_cannot_start_leaves_the_work_to_the_others(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    fake = FakeRay([node(2.0)], starts=["fail", 0.0])
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert {r.status for r in records} == {"done"} and len(records) == 9
    assert [len(a.groups) for a in fake.actors] == [0, 3] and fake.killed == fake.actors


def test_no_worker_starting_is_one_line(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    fake = FakeRay([node(2.0)], starts=["fail", "fail"])
    with pytest.raises(ConfigError) as err:
        _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert str(err.value) == ("no Ray worker could start (RayError: ModuleNotFoundError: No module named 'genies'): "
                              "every node needs the driver's Python with genies installed")
    assert fake.killed == fake.actors


def test_groups_wait_for_slower_workers_within_the_grace_period(tmp_path, monkeypatch, keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    fake = FakeRay([node(2.0)], starts=[0.0, 0.3])
    _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert sorted(len(a.groups) for a in fake.actors) == [1, 2]  # the slower worker got its share


def test_after_the_grace_period_the_workers_that_are_up_start(tmp_path, monkeypatch, keep_torch_threads) -> None:
    monkeypatch.setattr(ray_executor, "START_GRACE_S", 0.2)
    plan, dists = _plan_and_data()
    fake = FakeRay([node(2.0)], starts=[0.0, float("inf")])  # the second worker never comes up
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert len(records) == 9 and [len(a.groups) for a in fake.actors] == [3, 0]
    waited = fake.dispatched[0] - fake.actors[0].up_at  # the grace period, counted from the first worker up
    assert 0.2 <= waited < 0.9


def test_a_retried_call_reports_each_job_once(tmp_path, monkeypatch, keep_torch_threads) -> None:
    """A worker killed after two jobs of a group: Ray retries the call, which yields the group's
    jobs from the first again (found in the store); the driver keeps the records it had."""
    plan, dists = _plan_and_data()
    want, _ = _local(tmp_path, plan, dists)
    fit = next(f for f in plan.fits.values() if len(plan.predicts_of(f)) == 3)
    fake = FakeRay([node(1.0)])
    fake.faults[fit.label] = ("replay", 2)
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert [_plain(r) for r in records] == want


def test_a_lost_worker_fails_the_rest_of_its_group_and_the_run_goes_on(tmp_path, monkeypatch,
                                                                       keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    fits = list(plan.fits.values())
    lost = fits[0]  # the first group: two more groups wait for the same worker
    fake = FakeRay([node(1.0)])
    fake.faults[lost.label] = ("lose", 1)
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    first, second = plan.predicts_of(lost)
    failed = {r.key: r.error for r in records if r.status == "failed"}
    assert failed == {first.key: "RayError: the worker died", second.key: f"not run: {first.label} failed"}
    assert len(records) == 9 and {r.key for r in records} == {*plan.fits, *plan.predicts}
    assert [label for label, _, _ in fake.actors[0].groups] == [f.label for f in fits]  # the worker went on


@pytest.mark.parametrize("cpus, threads", [(2.0, 2), (0.5, 1)])
def test_each_job_uses_as_many_threads_as_its_worker_reserves(tmp_path, monkeypatch, keep_torch_threads, cpus,
                                                              threads) -> None:
    import torch

    plan, dists = _plan_and_data()
    fake = FakeRay([node(4.0)])
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch,
                       resources=JobResources(num_cpus=cpus))
    assert len(records) == 9 and fake.options["num_cpus"] == cpus
    assert {a.recipe.threads for a in fake.actors} == {threads} and torch.get_num_threads() == threads
    assert len(fake.actors) == (3 if cpus == 0.5 else 2)  # 4 CPUs: 8 half-CPU workers, or 2 two-CPU ones


def test_the_node_setting_overrides_the_probe(tmp_path, monkeypatch, keep_torch_threads) -> None:
    """GENIES_RAY_SHARED_FS=1: the node says it shares the store even where the probe is not seen."""
    from genies.pipeline.ray_executor import GroupWorker, JobRecipe

    monkeypatch.setenv("GENIES_RAY_SHARED_FS", "1")
    recipe = JobRecipe(model=StubModel(), distributions={}, store_root=tmp_path / "driver-store",
                       activation_root=tmp_path / "acts", seed=0, probe=tmp_path / "absent-probe", threads=1)
    worker = GroupWorker(recipe)
    assert worker.shares_store() is True and worker.store.root == tmp_path / "driver-store"
    assert worker.activations.root == tmp_path / "acts"
    monkeypatch.setenv("GENIES_RAY_SHARED_FS", "yes")  # anything but 0 / 1: the probe decides
    assert GroupWorker(recipe).shares_store() is False
    (tmp_path / "absent-probe").touch()
    assert GroupWorker(recipe).shares_store() is True


def test_a_worker_registers_the_classes_it_was_shipped(tmp_path, monkeypatch, keep_torch_threads) -> None:
    from genies.pipeline.ray_executor import GroupWorker, JobRecipe

    _no_plugins(monkeypatch)
    blobs = shipped_registrations(_plan_of("pt_unit_a"))
    del registry._REGISTRY["pt_unit_a"]  # the fixture's copy: a worker process that never imported this module
    GroupWorker(JobRecipe(model=StubModel(), distributions={}, store_root=tmp_path, activation_root=None, seed=0,
                          probe=tmp_path / "probe", threads=1, registrations=blobs))
    assert registry._REGISTRY["pt_unit_a"].__name__ == "ShippedA"


def test_a_training_view_ships_the_distributions_it_reads(tmp_path, monkeypatch, keep_torch_threads) -> None:
    """A fit on src with part of its training set drawn from tgt2, predicting src only: tgt2 is
    read by the fit alone, and must reach the worker all the same."""
    from genies.pipeline.plan import PlanBuilder, configure_methods
    from genies.pipeline.views import TargetMix, TrainView

    dists = distributions()
    builder = PlanBuilder(configure_methods(["pt_length"], None), seed=0, model_fingerprint="fp",
                          precision={"dtype": "float32", "quantize": "none"},
                          data_hash=lambda n, s: dists[n].content_hash(s))
    fit = builder.fit("pt_length", "src", TrainView(mix=TargetMix("tgt2", 0.5, 0)))
    builder.predict(fit, "src")
    fake = FakeRay([node(1.0)])
    records = _execute(tmp_path, fake, builder.plan, _env(tmp_path / "store", dists), monkeypatch)
    assert [r.status for r in records] == ["done", "done"]
    assert sorted(fake.actors[0].recipe.distributions) == ["src", "tgt2"]


def test_a_worker_failing_to_start_after_another_is_up_costs_nothing(tmp_path, monkeypatch,
                                                                    keep_torch_threads) -> None:
    plan, dists = _plan_and_data()
    fake = FakeRay([node(2.0)], starts=[0.0, "fail"])
    records = _execute(tmp_path, fake, plan, _env(tmp_path / "store", dists), monkeypatch)
    assert {r.status for r in records} == {"done"} and [len(a.groups) for a in fake.actors] == [3, 0]


def test_the_executor_joins_the_address_it_was_given(monkeypatch) -> None:
    fake = FakeRay([])
    fake.initialized = False
    fake.install(monkeypatch)
    with pytest.raises(ConfigError, match="^--ray-address 'nowhere': expected auto or HOST:PORT"):
        ray_executor.RayExecutor(StubModel(), "nowhere")
    assert fake.inits == []
    executor = ray_executor.RayExecutor(StubModel(), None, plain=True)
    assert fake.inits and executor.plain is True and executor.resources == JobResources(1.0, 0.0, None)
    assert executor.console.stderr is True  # rich progress on stderr, as the local executor's
    mine = Console(file=io.StringIO())
    default = ray_executor.RayExecutor(StubModel(), None, console=mine)
    assert default.console is mine and default.plain is False  # rich progress unless asked for plain lines
