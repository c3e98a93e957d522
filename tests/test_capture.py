"""Data capture: sampled JSON lines in rotating, bounded files; never blocking or failing the
caller when the target is blocked or not writable; wired into the HTTP endpoint."""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import predictor_from, trial_data

from automl.exceptions import ConfigError
from automl.models import get_family
from automl.training import train_candidate
from serving.capture import CaptureConfig, DataCapture


def _lines(directory: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(directory.glob("capture-*.jsonl"))
        for line in f.read_text().splitlines()
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"directory": ""}, "capture directory must be a non-empty path"),
        ({"directory": "s3://b/c"}, "must be a local path"),
        ({"directory": "d", "sample_rate": 1.5}, "sample_rate must be a number from 0 to 1; got 1.5"),
        ({"directory": "d", "sample_rate": "all"}, "sample_rate must be a number"),
        ({"directory": "d", "max_file_bytes": 10}, "max_file_bytes must be an integer >= 1024; got 10"),
        ({"directory": "d", "max_files": 0}, "max_files must be an integer >= 1; got 0"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CaptureConfig(**kwargs)


def test_records_are_json_lines_in_rotating_bounded_files(tmp_path):
    cfg = CaptureConfig(str(tmp_path / "cap"), max_file_bytes=4096, max_files=3)
    with DataCapture(cfg) as cap:
        for i in range(200):
            cap.record(
                endpoint="predict",
                rows=[{"i": i, "color": "red"}],
                response={"predictions": ["yes"]},
                model_version="v1",
            )
    stats = cap.stats()
    assert stats["written"] == 200 and stats["dropped"] == 0 and stats["errors"] == 0
    files = sorted((tmp_path / "cap").glob("capture-*.jsonl"))
    assert len(files) == 3 and stats["files_rotated"] > 3  # older files were deleted
    assert all(f.stat().st_size <= 4096 for f in files)
    lines = _lines(tmp_path / "cap")
    ids = [ev["rows"][0]["i"] for ev in lines]
    assert ids == sorted(ids) and ids[-1] == 199 and len(ids) < 200  # the newest events are kept, in order
    ev = lines[-1]
    assert ev["endpoint"] == "predict" and ev["model_version"] == "v1" and ev["n_rows"] == 1
    assert (
        ev["response"] == {"predictions": ["yes"]}
        and ev["captured_at"].endswith("Z")
        and len(ev["event_id"]) == 32
    )


def test_sample_rate_keeps_that_share(tmp_path):
    with DataCapture(CaptureConfig(str(tmp_path), sample_rate=0.25), seed=0) as cap:
        for i in range(2000):
            cap.record(endpoint="predict", rows=[{"i": i}], response={}, model_version="v")
    stats = cap.stats()
    assert stats["seen"] == 2000 and 400 <= stats["sampled"] <= 600
    assert stats["written"] == stats["sampled"] == len(_lines(tmp_path))
    with DataCapture(CaptureConfig(str(tmp_path / "none"), sample_rate=0.0)) as off:
        off.record(endpoint="predict", rows=[{"i": 1}], response={}, model_version="v")
    assert off.stats()["sampled"] == 0 and not (tmp_path / "none").exists()


def test_unwritable_directory_never_raises_and_is_counted(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the capture directory should be")  # not writable, even for root
    cap = DataCapture(CaptureConfig(str(blocker / "capture")))
    for i in range(500):
        cap.record(endpoint="predict", rows=[{"i": i}], response={"predictions": [1]}, model_version="v")
    cap.record(endpoint="predict", rows=[{"bad": object()}], response={}, model_version="v")  # unserialisable
    cap.close()
    stats = cap.stats()
    assert stats["written"] == 0 and stats["dropped_write_error"] >= 1
    assert stats["seen"] == 501 and stats["dropped_write_error"] + stats["errors"] + stats["written"] >= 1
    assert "cannot write to" in stats["last_error"] and "Not a directory" in stats["last_error"]


def _drain(fifo: Path, received: list[int], until: float) -> None:
    """Read a FIFO until its writer closes it (or ``until``)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while time.time() < until:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:  # a writer is connected but has written nothing yet
                chunk = None
            if chunk:
                received.append(len(chunk))
            elif chunk == b"" and received:  # the writer closed its end
                return
            time.sleep(0.005)
    finally:
        os.close(fd)


def test_blocked_target_does_not_block_the_caller(tmp_path):
    """A FIFO nobody reads stands in for a hung disk: opening it blocks the writer thread."""
    d = tmp_path / "cap"
    d.mkdir()
    now = time.time()
    for t in range(-2, 6):  # every name the first file can get in the next seconds
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now + t))
        os.mkfifo(d / f"capture-{stamp}-{os.getpid()}-00001.jsonl")
    cap = DataCapture(CaptureConfig(str(d)), queue_size=50)
    per_call = []
    for i in range(3000):
        t0 = time.perf_counter()
        cap.record(endpoint="predict", rows=[{"i": i}], response={}, model_version="v")
        per_call.append(time.perf_counter() - t0)
    stats = cap.stats()
    assert stats["written"] == 0 and stats["sampled"] == 3000
    # in flight: up to one batch (256) taken by the blocked writer thread, plus 50 queued
    assert stats["dropped_queue_full"] >= 3000 - 256 - 50
    assert statistics.median(per_call) < 0.001 and max(per_call) < 0.5
    received: list[int] = []
    readers = [threading.Thread(target=_drain, args=(f, received, time.time() + 20)) for f in d.iterdir()]
    for r in readers:
        r.start()
    cap.close(timeout=15)  # unblocked: the queued events are written, then the file is closed
    for r in readers:
        r.join()
    after = cap.stats()
    assert after["written"] == 3000 - after["dropped_queue_full"] > 0  # nothing else lost once unblocked
    assert sum(received) == after["bytes_written"]


# --- through the HTTP endpoint ------------------------------------------------------------------------
N_REQUESTS = 60


@pytest.fixture(scope="module")
def small_model(binary_df, tmp_path_factory):
    data, pre, schema, prof = trial_data(binary_df, "label", recipes=("tree",))
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    return predictor_from(res, data, pre, schema, prof).save(tmp_path_factory.mktemp("m") / "model")


@contextmanager
def _http_app(model_dir: Path, capture: CaptureConfig | None) -> Iterator[tuple[str, Any]]:
    """The endpoint's FastAPI app (serving.app.ModelService, the code Ray Serve runs in each
    replica) in a real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    from serving.app import AppArgs, ModelService

    service = ModelService(AppArgs(model_dir=str(model_dir), capture=capture))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            service.build_fastapi(), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        server.should_exit = True
        thread.join(10)
        if service.capture is not None:
            service.capture.close()


def test_unwritable_capture_target_does_not_slow_requests(small_model, binary_df, tmp_path):
    """N requests alternating between two copies of the endpoint, one capturing into a directory
    that cannot be created, one without capture: same median latency, every request answered,
    every sampled event counted as dropped."""
    import httpx

    rows = json.loads(binary_df.drop(columns=["label"]).head(50).to_json(orient="records"))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the capture directory's parent should be")
    latency: dict[str, list[float]] = {"unwritable": [], "none": []}
    with (
        _http_app(small_model, CaptureConfig(str(blocker / "cap"))) as (with_capture, service),
        _http_app(small_model, None) as (without, _),
        httpx.Client(timeout=30) as client,
    ):
        for i in range(N_REQUESTS + 10):  # the first 10 rounds warm up
            start = (2 * i) % len(rows)
            for name, base in (("unwritable", with_capture), ("none", without)):
                t0 = time.perf_counter()
                r = client.post(f"{base}/predict", json={"rows": rows[start : start + 2]})
                if i >= 10:
                    latency[name].append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
        stats = service.capture.stats()
    assert stats["seen"] == N_REQUESTS + 10 and stats["written"] == 0 and stats["dropped_write_error"] >= 1
    assert not (blocker / "cap").exists()
    med = {k: statistics.median(v) for k, v in latency.items()}
    assert med["unwritable"] <= 1.5 * med["none"] + 0.005, med  # capture work happens off the request path


def test_endpoint_captures_each_successful_request(small_model, binary_df, tmp_path):
    import httpx

    rows = json.loads(binary_df.drop(columns=["label"]).head(10).to_json(orient="records"))
    with (
        _http_app(small_model, CaptureConfig(str(tmp_path / "cap"))) as (base, service),
        httpx.Client(timeout=30) as client,
    ):
        assert client.post(f"{base}/predict", json={"rows": rows[:3]}).status_code == 200
        assert client.post(f"{base}/predict_proba", json={"rows": rows[3:4]}).status_code == 200
        assert client.post(f"{base}/predict", json={"rows": [{"x1": "not a number"}]}).status_code == 422
    events = _lines(tmp_path / "cap")  # the service's capture was closed: everything is on disk
    assert [(e["endpoint"], e["n_rows"]) for e in events] == [("predict", 3), ("predict_proba", 1)]
    assert events[0]["rows"] == rows[:3] and len(events[0]["response"]["predictions"]) == 3
    assert set(events[1]["response"]["probabilities"][0]) == {"no", "yes"}
    assert events[0]["model_version"] == service.version
