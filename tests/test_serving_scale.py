"""What Serve does with the endpoint under load and failure, observed on the test session's Ray
(2 CPUs): autoscaling between 1 and 2 replicas, ``@serve.batch`` forming batches larger than one,
and a replica whose predictions keep failing reported unhealthy and replaced.

Each test redeploys the application on one Serve instance (one port) with its own AppArgs.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROW = {"x1": 0.5, "x2": 0.1, "color": "red", "x3": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(small_run) -> str:
    return small_run("binary")


@pytest.fixture(scope="module")
def deploy(ray_session, model_dir):
    """``deploy(**app_args) -> base URL``: (re)deploys the app on the module's port."""
    from serving import server
    from serving.schemas import AppArgs

    port = _free_port()

    def go(**kw) -> str:
        return server.start(AppArgs(model_dir=model_dir, **kw), port=port)

    yield go
    server.stop()


def _replicas() -> dict[str, int]:
    from ray import serve

    app = serve.status().applications.get("automl")
    if app is None or "AutoMLModel" not in app.deployments:
        return {}
    return {str(getattr(k, "value", k)): v for k, v in app.deployments["AutoMLModel"].replica_states.items()}


def _wait_for(what: str, check, timeout_s: float, every_s: float = 0.5):
    deadline = time.time() + timeout_s
    seen = None
    while time.time() < deadline:
        seen = check()
        if seen:
            return seen
        time.sleep(every_s)
    raise AssertionError(f"{what}: not seen within {timeout_s:.0f}s (last: {seen!r}, replicas {_replicas()})")


class Load:
    """``clients`` concurrent clients POSTing one row to ``/predict`` until stopped (a thread)."""

    def __init__(self, base: str, clients: int) -> None:
        self.base, self.clients = base, clients
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=60.0) as c:

            async def one() -> None:
                while not self._stop.is_set():
                    try:
                        r = await c.post("/predict", json={"rows": [ROW]})
                        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                    except httpx.HTTPError:
                        self.statuses[-1] = self.statuses.get(-1, 0) + 1

            await asyncio.gather(*(one() for _ in range(self.clients)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(90)


def test_autoscaling_adds_a_second_replica_under_load_and_removes_it_after(deploy):
    base = deploy(
        autoscale=(1, 2),
        autoscale_target_ongoing_requests=1,
        upscale_delay_s=1.0,
        downscale_delay_s=2.0,
        autoscale_look_back_s=2.0,
        max_batch_size=4,
    )
    assert _replicas() == {"RUNNING": 1}
    t0 = time.time()
    with Load(base, clients=16) as load:
        _wait_for("a second RUNNING replica under load", lambda: _replicas().get("RUNNING") == 2, 120)
        up_s = time.time() - t0
        time.sleep(2)  # both replicas answer
    assert load.statuses.get(200, 0) > 16 and set(load.statuses) == {200}, load.statuses
    t1 = time.time()
    _wait_for("back to one replica once the load stopped", lambda: _replicas() == {"RUNNING": 1}, 120)
    print(
        f"autoscaling: 2 replicas {up_s:.0f}s after the load started, "
        f"1 again {time.time() - t1:.0f}s after it ended"
    )


def test_concurrent_requests_form_batches_larger_than_one(deploy):
    base = deploy(max_batch_size=8, batch_wait_timeout_s=0.05)
    before = httpx.get(base + "/stats", timeout=30).json()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60.0) as c:
            return await asyncio.gather(*(c.post("/predict", json={"rows": [ROW]}) for _ in range(32)))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 32
    stats = httpx.get(base + "/stats", timeout=30).json()
    assert stats["replica"] == before["replica"]  # one replica answered everything
    assert stats["requests_predicted"] - before["requests_predicted"] == 32
    assert stats["largest_batch"] > 1, stats
    assert stats["predictor_calls"] - before["predictor_calls"] < 32  # fewer calls than requests
    print(f"batches: {stats['batch_sizes']}")


def test_a_replica_whose_predictions_keep_failing_is_replaced(deploy, tmp_path):
    fault = tmp_path / "fail-now"
    base = deploy(fault_file=str(fault), health_check_period_s=1.0)
    first = httpx.get(base + "/stats", timeout=30).json()["replica"]
    assert httpx.post(base + "/predict", json={"rows": [ROW]}, timeout=30).status_code == 200
    fault.touch()
    answers = [httpx.post(base + "/predict", json={"rows": [ROW]}, timeout=30) for _ in range(5)]
    assert [a.status_code for a in answers] == [500] * 5
    assert "internal error" in answers[0].json()["detail"]
    fault.unlink()  # the replacement predicts normally; the failing replica gets no more requests
    t0 = time.time()
    states: list[dict[str, int]] = []

    def replaced() -> str | None:
        states.append(_replicas())
        try:
            now = httpx.get(base + "/stats", timeout=5).json()["replica"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return now if now != first else None

    second = _wait_for("a new replica in place of the unhealthy one", replaced, 120)
    print(f"unhealthy replica {first} replaced by {second} in {time.time() - t0:.0f}s; states seen {states}")
    ok = httpx.post(base + "/predict", json={"rows": [ROW]}, timeout=30)
    assert ok.status_code == 200
    assert httpx.get(base + "/stats", timeout=30).json()["internal_failures_in_a_row"] == 0


def test_a_short_look_back_window_gets_load_figures_inside_it():
    """Ray Serve 2.60 pushes replica and handle load every ``metrics_interval_s`` (10 s by default);
    a shorter look-back window would average over at most one push (and Ray warns it will be an error)."""
    from serving.app import build_app
    from serving.schemas import AppArgs

    def autoscaling(**kw) -> dict:
        app = build_app(AppArgs(model_dir="unused", autoscale=(1, 2), **kw))
        return app._bound_deployment._deployment_config.autoscaling_config.model_dump()

    short = autoscaling(autoscale_look_back_s=2.0)
    assert short["look_back_period_s"] == 2.0 and short["metrics_interval_s"] == 0.5
    default = autoscaling()  # 30 s: Serve's own interval stays
    assert default["look_back_period_s"] == 30.0 and default["metrics_interval_s"] == 10.0
