"""The Locust user of ``serving.loadtest``: POSTs one prepared body as fast as the server answers.

Run by ``serving.loadtest.run_load`` as ``locust -f serving/locustfile.py --headless ...`` in its own
process (Locust patches the standard library with gevent on import, so it is never imported by the
server or the tests). Settings come from environment variables:

* ``AUTOML_LOAD_BODY``: file holding the request body (sent as is);
* ``AUTOML_LOAD_PATH``: the path to POST to (e.g. ``/predict``);
* ``AUTOML_LOAD_HEADERS``: JSON object of request headers (content type, API key).

Each response is recorded by its status class (``4xx``/``5xx`` are Locust failures named by their
status code), so the statistics tell server errors from refused requests.
"""

from __future__ import annotations

import json
import os

from locust import FastHttpUser, constant, task

BODY = open(os.environ["AUTOML_LOAD_BODY"], "rb").read()  # noqa: SIM115 - read once at import
PATH = os.environ.get("AUTOML_LOAD_PATH", "/predict")
HEADERS = json.loads(os.environ.get("AUTOML_LOAD_HEADERS", "{}"))


class PredictUser(FastHttpUser):
    """One client: a request, its answer, the next request (no think time)."""

    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 60.0

    @task
    def predict(self) -> None:
        with self.client.post(PATH, data=BODY, headers=HEADERS, catch_response=True) as r:
            if r.status_code >= 400 or r.status_code == 0:
                r.failure(f"HTTP {r.status_code}")
            else:
                r.success()
